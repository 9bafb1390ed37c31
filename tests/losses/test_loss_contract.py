"""What every built-in loss promises the trainer and the SDK, checked on one example request."""

import math

import pytest
import torch

from losses.registry import LOSSES, get_loss

RL_LOSSES = ("importance_sampling", "ppo", "cispo", "dro")
REDUCTIONS = {"mean", "sum", "min", "max"}


def rl_inputs(spec, advantages):
    length = len(advantages)
    inputs = {
        "logprobs": torch.full((length,), -1.0),
        "advantages": torch.tensor(advantages, dtype=torch.float32),
    }
    # the trainer broadcasts config thresholds to one value per token
    for name in spec.per_token_config:
        inputs[name] = torch.full((length,), spec.config_defaults[name])
    return inputs


def test_registry_holds_the_built_in_losses():
    assert set(LOSSES) == {"cross_entropy", *RL_LOSSES}
    for name, spec in LOSSES.items():
        assert get_loss(name) is spec


@pytest.mark.parametrize("loss_name", RL_LOSSES)
def test_rl_losses_require_sampler_logprobs_and_advantages(loss_name):
    assert get_loss(loss_name).required_inputs == ("logprobs", "advantages")


@pytest.mark.parametrize("loss_name", ["ppo", "cispo"])
def test_clip_thresholds_may_arrive_per_token(loss_name):
    assert get_loss(loss_name).per_token_config == ("clip_low_threshold", "clip_high_threshold")


@pytest.mark.parametrize("loss_name", RL_LOSSES)
def test_metrics_are_floats_keyed_name_colon_reduction_without_loss_sum(loss_name):
    spec = get_loss(loss_name)
    lp = torch.tensor([-0.5, -1.5, -0.9], requires_grad=True)
    result = spec.compute(lp, rl_inputs(spec, [1.0, -1.0, 0.0]), dict(spec.config_defaults))

    assert result.loss.dim() == 0
    assert "loss:sum" not in result.metrics
    for key, value in result.metrics.items():
        name, reduction = key.split(":")  # exactly one colon
        assert name and reduction in REDUCTIONS
        assert type(value) is float and math.isfinite(value)


@pytest.mark.parametrize("loss_name", RL_LOSSES)
def test_request_without_trained_tokens_reports_an_unmoved_policy(loss_name):
    spec = get_loss(loss_name)
    lp = torch.tensor([-0.5, -1.5, -0.9])
    result = spec.compute(lp, rl_inputs(spec, [0.0, 0.0, 0.0]), dict(spec.config_defaults))

    # no token has a nonzero advantage: the means fall back to ratio 1, KL 0, nothing clipped
    assert result.metrics["ratio:mean"] == 1.0
    assert result.metrics["kl_sample_train:mean"] == 0.0
    assert result.metrics.get("clip_fraction:mean", 0.0) == 0.0


@pytest.mark.parametrize("loss_name", RL_LOSSES)
def test_loss_is_a_sum_so_repeating_the_request_doubles_it(loss_name):
    spec = get_loss(loss_name)
    lp = torch.tensor([-0.5, -1.5, -0.9])
    config = dict(spec.config_defaults)
    inputs = rl_inputs(spec, [1.0, -1.0, 0.5])
    once = spec.compute(lp, inputs, config)
    # two datums of the same content, concatenated as the trainer does
    twice_inputs = {name: torch.cat([tensor, tensor]) for name, tensor in inputs.items()}
    twice = spec.compute(torch.cat([lp, lp]), twice_inputs, config)
    torch.testing.assert_close(twice.loss, 2 * once.loss)


@pytest.mark.parametrize("loss_name", RL_LOSSES)
def test_forward_without_gradient_gives_the_same_loss(loss_name):
    spec = get_loss(loss_name)
    config = dict(spec.config_defaults)
    inputs = rl_inputs(spec, [1.0, -1.0, 0.5])
    lp = torch.tensor([-0.5, -1.5, -0.9])
    with_grad = spec.compute(lp.clone().requires_grad_(), inputs, config)
    with torch.no_grad():
        without_grad = spec.compute(lp, inputs, config)
    torch.testing.assert_close(without_grad.loss, with_grad.loss.detach())
    assert without_grad.metrics == with_grad.metrics
