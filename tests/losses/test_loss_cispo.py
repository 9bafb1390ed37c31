"""cispo: loss = -Σ sg(clip(r, low, high))·lp·A, r = exp(lp - q); expected values worked by hand.

Same six tokens as the ppo tests; token 4 is a prompt position (A = 0, q padded with 0).

    token   lp     q     A     lp - q   r = exp(lp - q)
    0      -0.5  -0.7   1.0     0.2     1.2214
    1      -1.0  -1.1   2.0     0.1     1.1052
    2      -0.2  -0.6  -1.0     0.4     1.4918
    3      -2.0  -1.5  -0.5    -0.5     0.6065
    4      -3.0   0.0   0.0    -3.0     0.0498
    5      -1.5  -1.0   1.5    -0.5     0.6065

With the weight held constant, d(-w·lp·A)/dlp = -w·A for every token, clipped or not.
"""

import math

import torch

from losses.registry import get_loss

LP = [-0.5, -1.0, -0.2, -2.0, -3.0, -1.5]
Q = [-0.7, -1.1, -0.6, -1.5, 0.0, -1.0]
A = [1.0, 2.0, -1.0, -0.5, 0.0, 1.5]


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def cispo_inputs(low, high, q_values=Q, a_values=A):
    return {
        "logprobs": f32(q_values),
        "advantages": f32(a_values),
        "clip_low_threshold": f32(low),
        "clip_high_threshold": f32(high),
    }


def loss_and_grad(inputs, config, lp_values=LP):
    lp = f32(lp_values).requires_grad_()
    result = get_loss("cispo").compute(lp, inputs, config)
    (grad,) = torch.autograd.grad(result.loss, lp)
    return result, grad


def test_cispo_default_thresholds_are_0_and_4():
    assert dict(get_loss("cispo").config_defaults) == {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0}


def test_cispo_loss_and_gradient_with_tight_window():
    # a window of [0.7, 1.3] so that both bounds bite on this example
    config = {"clip_low_threshold": 0.7, "clip_high_threshold": 1.3}
    result, grad = loss_and_grad(cispo_inputs([0.7] * 6, [1.3] * 6), config)

    r0, r1 = math.exp(0.2), math.exp(0.1)
    # token 0: w = r = 1.2214 (inside); term = w·lp·A = 1.2214·(-0.5)·1 = -0.6107;
    #          gradient -w·A = -1.2214
    # token 1: w = r = 1.1052 (inside); term = 1.1052·(-1.0)·2 = -2.2103; gradient -1.1052·2 = -2.2103
    # token 2: r = 1.4918 > 1.3, w = 1.3; term = 1.3·(-0.2)·(-1) = 0.26; gradient -1.3·(-1) = +1.3
    #          (ppo would keep r here because A < 0; cispo clips the weight regardless of sign)
    # token 3: r = 0.6065 < 0.7, w = 0.7; term = 0.7·(-2.0)·(-0.5) = 0.7; gradient -0.7·(-0.5) = +0.35
    # token 4: A = 0: term 0, gradient 0
    # token 5: r = 0.6065 < 0.7, w = 0.7; term = 0.7·(-1.5)·1.5 = -1.575; gradient -0.7·1.5 = -1.05
    # loss = -(-0.6107 - 2.2103 + 0.26 + 0.7 + 0 - 1.575) = 3.4360
    terms = [r0 * -0.5 * 1.0, r1 * -1.0 * 2.0, 1.3 * -0.2 * -1.0, 0.7 * -2.0 * -0.5, 0.0, 0.7 * -1.5 * 1.5]
    expected_loss = -sum(terms)
    expected_grad = f32([-r0 * 1.0, -r1 * 2.0, 1.3, 0.35, 0.0, -0.7 * 1.5])

    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, expected_grad)


def test_cispo_metrics_run_over_tokens_with_nonzero_advantage():
    config = {"clip_low_threshold": 0.7, "clip_high_threshold": 1.3}
    result, _ = loss_and_grad(cispo_inputs([0.7] * 6, [1.3] * 6), config)

    # trained tokens: 0, 1, 2, 3, 5. Clipped: token 2 (r > 1.3), tokens 3 and 5 (r < 0.7) → 3 / 5 = 0.6.
    # Token 4 (r = 0.0498 < 0.7) is outside the window too but has A = 0, so it is not counted.
    expected_clip_fraction = 3 / 5
    # ratio mean = (1.2214 + 1.1052 + 1.4918 + 0.6065 + 0.6065) / 5 = 1.0063
    expected_ratio = (math.exp(0.2) + math.exp(0.1) + math.exp(0.4) + 2 * math.exp(-0.5)) / 5
    # kl_sample_train = mean(q - lp) = (-0.2 - 0.1 - 0.4 + 0.5 + 0.5) / 5 = 0.06
    expected_kl = 0.3 / 5

    assert set(result.metrics) == {"ratio:mean", "clip_fraction:mean", "kl_sample_train:mean"}
    assert math.isclose(result.metrics["clip_fraction:mean"], expected_clip_fraction, rel_tol=1e-6)
    assert math.isclose(result.metrics["ratio:mean"], expected_ratio, rel_tol=1e-6)
    assert math.isclose(result.metrics["kl_sample_train:mean"], expected_kl, rel_tol=1e-5)


def test_cispo_default_window_only_clips_large_ratios():
    # two tokens: lp - q = 1.5 gives r = exp(1.5) = 4.4817 > 4, clipped to w = 4;
    #             lp - q = -2.0 gives r = exp(-2) = 0.1353 >= 0, kept
    lp_values = [-0.5, -3.0]
    q_values = [-2.0, -1.0]
    a_values = [1.0, -2.0]
    config = {"clip_low_threshold": 0.0, "clip_high_threshold": 4.0}
    inputs = cispo_inputs([0.0, 0.0], [4.0, 4.0], q_values, a_values)
    result, grad = loss_and_grad(inputs, config, lp_values)

    r1 = math.exp(-2.0)
    # token 0: term = 4·(-0.5)·1 = -2.0, gradient -4·1 = -4
    # token 1: term = 0.1353·(-3.0)·(-2) = 0.8120, gradient -0.1353·(-2) = +0.2707
    # loss = -(-2.0 + 0.8120) = 1.1880
    expected_loss = -(4.0 * -0.5 * 1.0 + r1 * -3.0 * -2.0)
    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, f32([-4.0, 2.0 * r1]))
    assert result.metrics["clip_fraction:mean"] == 0.5


def test_cispo_per_token_thresholds_override_config():
    # the config says [0.7, 1.3]; token 2 carries its own high of 1.6 and token 3 its own low of 0.5
    config = {"clip_low_threshold": 0.7, "clip_high_threshold": 1.3}
    low = [0.7, 0.7, 0.7, 0.5, 0.7, 0.7]
    high = [1.3, 1.3, 1.6, 1.3, 1.3, 1.3]
    result, grad = loss_and_grad(cispo_inputs(low, high), config)

    r0, r1, r2, r3 = math.exp(0.2), math.exp(0.1), math.exp(0.4), math.exp(-0.5)
    # token 2: r = 1.4918 <= 1.6, so w = r: term = 1.4918·(-0.2)·(-1) = 0.2984, gradient -r·(-1) = +1.4918
    # token 3: r = 0.6065 >= 0.5, so w = r: term = 0.6065·(-2.0)·(-0.5) = 0.6065,
    #          gradient -r·(-0.5) = +0.3033
    # tokens 0, 1, 4, 5 as in the tight-window test
    expected_loss = -(r0 * -0.5 + r1 * -2.0 + r2 * 0.2 + r3 * 1.0 + 0.0 + 0.7 * -1.5 * 1.5)
    expected_grad = f32([-r0, -2.0 * r1, r2, 0.5 * r3, 0.0, -0.7 * 1.5])

    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, expected_grad)
    # only token 5 is clipped now: 1 of 5 trained tokens
    assert math.isclose(result.metrics["clip_fraction:mean"], 1 / 5, rel_tol=1e-6)
