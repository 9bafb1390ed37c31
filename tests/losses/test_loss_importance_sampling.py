"""importance_sampling: loss = -Σ r·A, r = exp(lp - q); expected values worked by hand.

    token   lp     q     A     lp - q   r = exp(lp - q)
    0      -0.5  -0.7   1.0     0.2     1.2214
    1      -1.0  -1.1   2.0     0.1     1.1052
    2      -0.2  -0.6  -1.0     0.4     1.4918
    3      -2.0  -1.5  -0.5    -0.5     0.6065
    4      -3.0   0.0   0.0    -3.0     0.0498   (prompt position: A = 0, q padded with 0)
    5      -1.5  -1.0   1.5    -0.5     0.6065

dr/dlp = r, so the gradient of -r·A is -r·A.
"""

import math

import torch

from losses.registry import get_loss

LP = [-0.5, -1.0, -0.2, -2.0, -3.0, -1.5]
Q = [-0.7, -1.1, -0.6, -1.5, 0.0, -1.0]
A = [1.0, 2.0, -1.0, -0.5, 0.0, 1.5]


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def test_importance_sampling_loss_and_gradient():
    lp = f32(LP).requires_grad_()
    result = get_loss("importance_sampling").compute(lp, {"logprobs": f32(Q), "advantages": f32(A)}, {})
    (grad,) = torch.autograd.grad(result.loss, lp)

    r = [math.exp(0.2), math.exp(0.1), math.exp(0.4), math.exp(-0.5), math.exp(-3.0), math.exp(-0.5)]
    # r·A per token: 1.2214·1 = 1.2214, 1.1052·2 = 2.2103, 1.4918·(-1) = -1.4918,
    #                0.6065·(-0.5) = -0.3033, 0.0498·0 = 0, 0.6065·1.5 = 0.9098
    # loss = -(1.2214 + 2.2103 - 1.4918 - 0.3033 + 0 + 0.9098) = -2.5465
    expected_loss = -(r[0] * 1.0 + r[1] * 2.0 + r[2] * -1.0 + r[3] * -0.5 + r[4] * 0.0 + r[5] * 1.5)
    # gradient -r·A: -1.2214, -2.2103, +1.4918, +0.3033, 0 (A = 0), -0.9098
    expected_grad = f32([-r[0], -2.0 * r[1], r[2], 0.5 * r[3], 0.0, -1.5 * r[5]])

    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, expected_grad)


def test_importance_sampling_metrics_run_over_tokens_with_nonzero_advantage():
    result = get_loss("importance_sampling").compute(f32(LP), {"logprobs": f32(Q), "advantages": f32(A)}, {})

    # trained tokens 0, 1, 2, 3, 5; the prompt position's r = 0.0498 is left out
    # ratio mean = (1.2214 + 1.1052 + 1.4918 + 0.6065 + 0.6065) / 5 = 1.0063
    expected_ratio = (math.exp(0.2) + math.exp(0.1) + math.exp(0.4) + 2 * math.exp(-0.5)) / 5
    # kl_sample_train = mean(q - lp) = (-0.2 - 0.1 - 0.4 + 0.5 + 0.5) / 5 = 0.06
    expected_kl = 0.3 / 5

    assert set(result.metrics) == {"ratio:mean", "kl_sample_train:mean"}
    assert math.isclose(result.metrics["ratio:mean"], expected_ratio, rel_tol=1e-6)
    assert math.isclose(result.metrics["kl_sample_train:mean"], expected_kl, rel_tol=1e-5)


def test_importance_sampling_has_no_config():
    spec = get_loss("importance_sampling")
    assert dict(spec.config_defaults) == {}
    assert spec.required_inputs == ("logprobs", "advantages")
