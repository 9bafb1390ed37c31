"""Gateway-side checks of loss requests: every mistake is a LossInputError naming the field."""

import numpy as np
import pytest

from losses.registry import get_loss
from losses.types import LossInputError
from losses.validate import validate_loss_request

RL_LOSSES = ("importance_sampling", "ppo", "cispo", "dro")


def rl_datum(length=4, **overrides):
    datum = {
        "target_tokens": np.arange(length, dtype=np.int64),
        "logprobs": np.full(length, -1.0, dtype=np.float32),
        "advantages": np.array([0.0, 1.0, -1.0, 0.5][:length], dtype=np.float32),
    }
    datum.update(overrides)
    return {key: value for key, value in datum.items() if value is not None}


def validation_error(loss_name, datums, config=None):
    lengths = [len(datum["target_tokens"]) for datum in datums]
    with pytest.raises(LossInputError) as caught:
        validate_loss_request(get_loss(loss_name), datums, lengths, config or {})
    return caught.value


@pytest.mark.parametrize("loss_name", RL_LOSSES)
def test_valid_rl_request_resolves_default_config(loss_name):
    resolved = validate_loss_request(get_loss(loss_name), [rl_datum(), rl_datum()], [4, 4], {})
    assert resolved == dict(get_loss(loss_name).config_defaults)


@pytest.mark.parametrize("loss_name", RL_LOSSES)
@pytest.mark.parametrize("missing", ["advantages", "logprobs"])
def test_missing_required_input_is_named(loss_name, missing):
    error = validation_error(loss_name, [rl_datum(), rl_datum(**{missing: None})])
    assert error.field == f"data[1].loss_fn_inputs[{missing!r}]"


def test_input_of_wrong_length_is_named():
    error = validation_error("ppo", [rl_datum(logprobs=np.full(3, -1.0, dtype=np.float32))])
    assert error.field == "data[0].loss_fn_inputs['logprobs']"


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_input_of_wrong_dtype_is_named(dtype):
    error = validation_error("cispo", [rl_datum(advantages=np.ones(4, dtype=dtype))])
    assert error.field == "data[0].loss_fn_inputs['advantages']"
    assert "float32" in str(error)


def test_unknown_config_key_is_named():
    error = validation_error("ppo", [rl_datum()], {"clip_epsilon": 0.2})
    assert error.field == "loss_fn_config['clip_epsilon']"


def test_dro_takes_no_clip_thresholds():
    error = validation_error("dro", [rl_datum()], {"clip_low_threshold": 0.8})
    assert error.field == "loss_fn_config['clip_low_threshold']"


@pytest.mark.parametrize(
    ("loss_name", "config", "field"),
    [
        ("ppo", {"clip_low_threshold": -0.1}, "clip_low_threshold"),
        ("ppo", {"clip_low_threshold": 1.1}, "clip_low_threshold"),
        ("ppo", {"clip_high_threshold": 0.9}, "clip_high_threshold"),
        # low > high is caught by the bound that leaves 1 outside [low, high]
        ("ppo", {"clip_low_threshold": 1.3, "clip_high_threshold": 1.2}, "clip_low_threshold"),
        ("cispo", {"clip_low_threshold": -1.0}, "clip_low_threshold"),
        ("cispo", {"clip_high_threshold": 0.5}, "clip_high_threshold"),
        ("dro", {"beta": -0.01}, "beta"),
    ],
)
def test_out_of_range_config_is_named(loss_name, config, field):
    assert validation_error(loss_name, [rl_datum()], config).field == field


@pytest.mark.parametrize(
    ("loss_name", "name", "values", "field"),
    [
        ("ppo", "clip_high_threshold", [1.2, 0.9, 1.2, 1.2], "data[1].loss_fn_inputs['clip_high_threshold']"),
        ("ppo", "clip_low_threshold", [0.8, 0.8, -0.2, 0.8], "data[1].loss_fn_inputs['clip_low_threshold']"),
        ("cispo", "clip_low_threshold", [0.0, 1.5, 0.0, 0.0], "data[1].loss_fn_inputs['clip_low_threshold']"),
    ],
)
def test_out_of_range_per_token_threshold_is_named(loss_name, name, values, field):
    datum = rl_datum(**{name: np.array(values, dtype=np.float32)})
    assert validation_error(loss_name, [rl_datum(), datum]).field == field


def test_per_token_threshold_must_be_float32_of_target_length():
    datum = rl_datum(clip_low_threshold=np.full(3, 0.8, dtype=np.float32))
    assert validation_error("ppo", [datum]).field == "data[0].loss_fn_inputs['clip_low_threshold']"


def test_in_range_per_token_thresholds_pass_even_when_they_differ_from_config():
    datum = rl_datum(
        clip_low_threshold=np.array([1.0, 0.5, 0.0, 0.9], dtype=np.float32),
        clip_high_threshold=np.array([1.0, 2.0, 1.5, 1.1], dtype=np.float32),
    )
    resolved = validate_loss_request(get_loss("ppo"), [datum], [4], {"clip_high_threshold": 1.3})
    assert resolved == {"clip_low_threshold": 0.8, "clip_high_threshold": 1.3}


def test_unknown_loss_name_is_named():
    with pytest.raises(LossInputError) as caught:
        get_loss("grpo")
    assert caught.value.field == "loss_fn"


@pytest.mark.parametrize("loss_name", [*RL_LOSSES, "cross_entropy"])
def test_unknown_float_input_such_as_mask_is_ignored(loss_name):
    datum = rl_datum(mask=np.array([0.0, 1.0, 1.0, 1.0], dtype=np.float32))
    validate_loss_request(get_loss(loss_name), [datum], [4], {})


def test_cross_entropy_accepts_top_k_targets_with_weights():
    datum = {
        "target_tokens": np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64),
        "weights": np.array([[0.5, -0.5], [0.25, 0.0], [1.0, 0.125]], dtype=np.float32),
    }
    assert validate_loss_request(get_loss("cross_entropy"), [datum], [3], {}) == {}


def test_cross_entropy_accepts_missing_weights():
    datum = {"target_tokens": np.arange(3, dtype=np.int64)}
    assert validate_loss_request(get_loss("cross_entropy"), [datum], [3], {}) == {}
