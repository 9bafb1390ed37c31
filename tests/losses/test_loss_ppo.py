"""ppo: loss = -Σ min(r·A, clip(r, low, high)·A), r = exp(lp - q); expected values worked by hand.

The example request has six tokens. Token 4 stands for a prompt position: advantage 0 and a sampler
logprob padded with 0, as clients send them.

    token   lp     q     A     lp - q   r = exp(lp - q)
    0      -0.5  -0.7   1.0     0.2     1.2214
    1      -1.0  -1.1   2.0     0.1     1.1052
    2      -0.2  -0.6  -1.0     0.4     1.4918
    3      -2.0  -1.5  -0.5    -0.5     0.6065
    4      -3.0   0.0   0.0    -3.0     0.0498
    5      -1.5  -1.0   1.5    -0.5     0.6065
"""

import math

import torch

from losses.registry import get_loss

LP = [-0.5, -1.0, -0.2, -2.0, -3.0, -1.5]
Q = [-0.7, -1.1, -0.6, -1.5, 0.0, -1.0]
A = [1.0, 2.0, -1.0, -0.5, 0.0, 1.5]


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def ppo_inputs(low, high):
    return {
        "logprobs": f32(Q),
        "advantages": f32(A),
        "clip_low_threshold": f32(low),
        "clip_high_threshold": f32(high),
    }


def loss_and_grad(inputs, config):
    lp = f32(LP).requires_grad_()
    result = get_loss("ppo").compute(lp, inputs, config)
    (grad,) = torch.autograd.grad(result.loss, lp)
    return result, grad


def test_ppo_default_thresholds_are_0_8_and_1_2():
    assert dict(get_loss("ppo").config_defaults) == {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}


def test_ppo_loss_and_gradient_with_default_thresholds():
    config = {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    # the trainer broadcasts config thresholds to one value per token
    result, grad = loss_and_grad(ppo_inputs([0.8] * 6, [1.2] * 6), config)

    r0, r1, r2, r3, r5 = math.exp(0.2), math.exp(0.1), math.exp(0.4), math.exp(-0.5), math.exp(-0.5)
    assert r0 > 1.2 and r3 < 0.8  # the premises of the two clipped tokens below
    # token 0: r = exp(0.2) = 1.2214 > 1.2 and A = 1 > 0, so the clipped term wins the min:
    #          min(1.2214·1, 1.2·1) = 1.2; the clipped term is constant in lp, gradient 0
    term0, grad0 = 1.2 * 1.0, 0.0
    # token 1: r = exp(0.1) = 1.1052 inside [0.8, 1.2]: term = 1.1052·2 = 2.2103,
    #          d(-r·A)/dlp = -r·A = -2.2103
    term1, grad1 = r1 * 2.0, -r1 * 2.0
    # token 2: r = exp(0.4) = 1.4918 > 1.2 but A = -1 < 0: min(-1.4918, -1.2) = -1.4918, the unclipped
    #          term, so the gradient survives: -r·A = +1.4918
    term2, grad2 = r2 * -1.0, -r2 * -1.0
    # token 3: r = exp(-0.5) = 0.6065 < 0.8 and A = -0.5 < 0: min(-0.3033, 0.8·(-0.5) = -0.4) = -0.4,
    #          clipped, gradient 0
    term3, grad3 = 0.8 * -0.5, 0.0
    # token 4: A = 0, so both terms are 0 and so is the gradient, whatever r = exp(-3) is
    term4, grad4 = 0.0, 0.0
    # token 5: r = 0.6065 < 0.8 but A = 1.5 > 0: min(0.9098, 1.2·1.5 = 1.8) = 0.9098, unclipped,
    #          gradient -r·A = -0.9098
    term5, grad5 = r5 * 1.5, -r5 * 1.5
    # loss = -(1.2 + 2.2103 - 1.4918 - 0.4 + 0 + 0.9098) = -2.4283
    expected_loss = -(term0 + term1 + term2 + term3 + term4 + term5)

    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, f32([grad0, grad1, grad2, grad3, grad4, grad5]))


def test_ppo_metrics_run_over_tokens_with_nonzero_advantage():
    config = {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    result, _ = loss_and_grad(ppo_inputs([0.8] * 6, [1.2] * 6), config)

    # trained tokens: 0, 1, 2, 3, 5 (token 4 has A = 0)
    # clipping is active on token 0 (A > 0, r > 1.2) and token 3 (A < 0, r < 0.8): 2 of 5 = 0.4
    # token 2 has r > 1.2 but A < 0, so the min keeps the unclipped term: not counted
    expected_clip_fraction = 2 / 5
    # ratio mean = (1.2214 + 1.1052 + 1.4918 + 0.6065 + 0.6065) / 5 = 5.0315 / 5 = 1.0063
    expected_ratio = (math.exp(0.2) + math.exp(0.1) + math.exp(0.4) + 2 * math.exp(-0.5)) / 5
    # kl_sample_train = mean(q - lp) = (-0.2 - 0.1 - 0.4 + 0.5 + 0.5) / 5 = 0.3 / 5 = 0.06
    expected_kl = (-0.2 - 0.1 - 0.4 + 0.5 + 0.5) / 5

    assert set(result.metrics) == {"ratio:mean", "clip_fraction:mean", "kl_sample_train:mean"}
    assert math.isclose(result.metrics["clip_fraction:mean"], expected_clip_fraction, rel_tol=1e-6)
    assert math.isclose(result.metrics["ratio:mean"], expected_ratio, rel_tol=1e-6)
    assert math.isclose(result.metrics["kl_sample_train:mean"], expected_kl, rel_tol=1e-5)


def test_ppo_per_token_thresholds_override_config():
    config = {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2}
    # per-token values: token 0 may reach 1.3, token 3 may fall to 0.5; the rest keep the config's
    low = [0.8, 0.8, 0.8, 0.5, 0.8, 0.8]
    high = [1.3, 1.2, 1.2, 1.2, 1.2, 1.2]
    result, grad = loss_and_grad(ppo_inputs(low, high), config)

    r0, r1, r2, r3, r5 = math.exp(0.2), math.exp(0.1), math.exp(0.4), math.exp(-0.5), math.exp(-0.5)
    # token 0: r = 1.2214 <= 1.3 now, unclipped: term 1.2214, gradient -1.2214
    # token 3: r = 0.6065 >= 0.5 now, unclipped: term 0.6065·(-0.5) = -0.3033, gradient -r·A = +0.3033
    # tokens 1, 2, 4, 5 as with the config thresholds
    expected_loss = -(r0 * 1.0 + r1 * 2.0 + r2 * -1.0 + r3 * -0.5 + 0.0 + r5 * 1.5)
    expected_grad = f32([-r0 * 1.0, -r1 * 2.0, r2 * 1.0, r3 * 0.5, 0.0, -r5 * 1.5])

    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, expected_grad)
    # no trained token is clipped any more
    assert result.metrics["clip_fraction:mean"] == 0.0
