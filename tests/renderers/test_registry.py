"""Finding renderers by name and by model."""

import pytest

from renderers import RENDERERS, get_renderer, recommended_renderer_name


def test_every_listed_renderer_is_built_by_name(qwen3_tokenizer, phi3_tokenizer, llama3_tokenizer):
    # each needs a tokenizer that has its format's special tokens
    own_tokenizer = {"phi3": phi3_tokenizer, "llama3": llama3_tokenizer}
    for name in RENDERERS:
        assert get_renderer(name, own_tokenizer.get(name, qwen3_tokenizer)).name == name


def test_unknown_renderer_lists_the_known_ones(qwen3_tokenizer):
    with pytest.raises(ValueError, match="unknown renderer 'qwen4'; known renderers: qwen3, qwen3_disable_thinking"):
        get_renderer("qwen4", qwen3_tokenizer)


@pytest.mark.parametrize(
    "model, expected",
    [
        ("Qwen/Qwen3-8B", "qwen3"),
        ("Qwen/Qwen3-30B-A3B", "qwen3"),
        ("Qwen/Qwen3-4B-Instruct-2507", "qwen3_instruct"),
        ("Qwen/Qwen3-8B-Base", "role_colon"),
        ("Qwen/Qwen2.5-7B-Instruct", "qwen2_5"),
        ("Qwen/Qwen2.5-7B", "role_colon"),
        ("microsoft/Phi-3.5-mini-instruct", "phi3"),
        ("meta-llama/Meta-Llama-3-8B-Instruct", "llama3"),
        ("meta-llama/Llama-3.1-8B", "role_colon"),
        ("/models/qwen2.5-instruct", "qwen2_5"),
    ],
)
def test_recommended_renderer(model, expected):
    assert recommended_renderer_name(model) == expected


def test_no_recommendation_for_unknown_models_points_to_hf_template():
    with pytest.raises(ValueError, match="no recommended renderer for 'mistralai/Mistral-7B'.*'hf_template'"):
        recommended_renderer_name("mistralai/Mistral-7B")
