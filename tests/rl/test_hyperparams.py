"""get_lr: the published LoRA learning-rate rule, lr = 5e-5 * 10 * (2000 / hidden_size) ** exponent,
with exponent 0.0775 for Qwen and 0.781 for Llama. Expected values are worked out by hand below."""

import json

import pytest

from rl.hyperparams import get_lr


def test_qwen3_8b_from_the_table():
    # hidden 4096: 2000/4096 = 0.48828; ln = -0.71670; * 0.0775 = -0.055544; exp = 0.94597
    # 5e-4 * 0.94597 = 4.7298e-4
    assert get_lr("Qwen/Qwen3-8B") == pytest.approx(4.7298e-4, rel=1e-4)


def test_llama_8b_and_1b_from_the_table():
    # hidden 4096: ln(0.48828) * 0.781 = -0.55974; exp = 0.57128; 5e-4 * 0.57128 = 2.8564e-4
    assert get_lr("meta-llama/Llama-3.1-8B-Instruct") == pytest.approx(2.8564e-4, rel=1e-3)
    # hidden 2048: ln(2000/2048) = -0.023717; * 0.781 = -0.018523; exp = 0.98165 -> 4.9082e-4
    assert get_lr("meta-llama/Llama-3.2-1B") == pytest.approx(4.9082e-4, rel=1e-4)


def test_variants_and_tinker_suffix_share_the_base_model_size():
    assert get_lr("Qwen/Qwen3-4B-Instruct-2507") == get_lr("qwen/qwen3-4b")
    assert get_lr("Qwen/Qwen3-30B-A3B-Base:peft:131072") == get_lr("Qwen/Qwen3-30B-A3B")


def test_explicit_hidden_size_wins():
    # Qwen family, hidden 1024: ln(2000/1024) = 0.66959; * 0.0775 = 0.051893; exp = 1.05326
    # 5e-4 * 1.05326 = 5.2663e-4
    assert get_lr("Qwen/Qwen3-8B", hidden_size=1024) == pytest.approx(5.2663e-4, rel=1e-4)


def test_local_folder_config(tmp_path):
    folder = tmp_path / "my-llama"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8192}))
    # Llama, hidden 8192: ln(2000/8192) = -1.41011; * 0.781 = -1.10130; exp = 0.33245 -> 1.6623e-4
    assert get_lr(str(folder)) == pytest.approx(1.6623e-4, rel=1e-4)


def test_nested_text_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "qwen3_vl", "architectures": ["Qwen3VLForConditionalGeneration"],
         "text_config": {"hidden_size": 4096}}))
    assert get_lr(str(tmp_path)) == pytest.approx(4.7298e-4, rel=1e-4)


def test_anvil_tiny_model_folder(tmp_path):
    from gateway.local_server import tiny_model_folder

    folder = tiny_model_folder(tmp_path)
    # Qwen3 architecture, hidden 128: ln(2000/128) = 2.74887; * 0.0775 = 0.213037; exp = 1.23743
    # 5e-4 * 1.23743 = 6.1872e-4; the table's entry for its name must agree with the folder
    assert get_lr(str(folder)) == pytest.approx(6.1872e-4, rel=1e-4)
    assert get_lr("anvil/tiny-qwen3") == get_lr(str(folder))


def test_unknown_name_without_hidden_size_says_to_pass_it():
    with pytest.raises(ValueError, match="pass hidden_size"):
        get_lr("Qwen/Qwen9-123B")


def test_uncalibrated_family_is_refused():
    with pytest.raises(ValueError, match="llama and qwen"):
        get_lr("mistralai/Mistral-7B-v0.3", hidden_size=4096)


def test_missing_folder_is_named(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        get_lr(str(tmp_path / "nowhere"))
