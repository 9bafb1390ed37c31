"""Rendered examples as tinker.Datum for cross_entropy."""

import pytest
import tinker

from renderers import datum_from_example, get_renderer


def _example(tokens, weights):
    return tinker.ModelInput.from_ints(tokens), weights


def test_targets_are_shifted_and_keep_their_weights():
    datum = datum_from_example(*_example([10, 11, 12, 13, 14], [0.0, 0.0, 1.0, 1.0, 0.0]))
    assert datum.model_input.to_ints() == [10, 11, 12, 13]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == [11, 12, 13, 14]
    assert datum.loss_fn_inputs["weights"].tolist() == [0.0, 1.0, 1.0, 0.0]
    assert datum.loss_fn_inputs["target_tokens"].dtype == "int64"
    assert datum.loss_fn_inputs["weights"].dtype == "float32"


def test_max_length_caps_what_the_model_reads():
    datum = datum_from_example(*_example([10, 11, 12, 13, 14], [0.0, 1.0, 1.0, 1.0, 1.0]), max_length=3)
    assert datum.model_input.to_ints() == [10, 11, 12]
    assert datum.loss_fn_inputs["target_tokens"].tolist() == [11, 12, 13]
    assert datum.loss_fn_inputs["weights"].tolist() == [1.0, 1.0, 1.0]
    # a cap above the length changes nothing
    longer = datum_from_example(*_example([10, 11, 12], [0.0, 1.0, 1.0]), max_length=100)
    assert longer.model_input.to_ints() == [10, 11]


def test_normalized_weights_sum_to_one_per_example():
    datum = datum_from_example(*_example([1, 2, 3, 4, 5], [0.0, 0.0, 1.0, 1.0, 1.0]), normalize_weights=True)
    assert datum.loss_fn_inputs["weights"].tolist() == pytest.approx([0.0, 1 / 3, 1 / 3, 1 / 3])
    untrained = datum_from_example(*_example([1, 2, 3], [1.0, 0.0, 0.0]), normalize_weights=True)
    assert untrained.loss_fn_inputs["weights"].tolist() == [0.0, 0.0]


def test_bad_examples_are_refused():
    with pytest.raises(ValueError, match="3 tokens but 2 weights"):
        datum_from_example(*_example([1, 2, 3], [0.0, 1.0]))
    with pytest.raises(ValueError, match="at least two tokens"):
        datum_from_example(*_example([1], [1.0]))
    with pytest.raises(ValueError, match="max_length must be at least 1"):
        datum_from_example(*_example([1, 2], [0.0, 1.0]), max_length=0)


def test_a_rendered_conversation_becomes_a_datum(qwen2_5_tokenizer):
    renderer = get_renderer("qwen2_5", qwen2_5_tokenizer)
    model_input, weights = renderer.build_supervised_example(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    )
    datum = datum_from_example(model_input, weights)
    targets = datum.loss_fn_inputs["target_tokens"].tolist()
    target_weights = datum.loss_fn_inputs["weights"].tolist()
    trained_targets = [t for t, w in zip(targets, target_weights, strict=True) if w]
    # the model is scored on predicting the reply and its end-of-turn token
    assert qwen2_5_tokenizer.decode(trained_targets) == "Hello!<|im_end|>"
    assert datum.model_input.length == model_input.length - 1
