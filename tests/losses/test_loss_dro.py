"""dro: loss = -Σ [lp·A - ½·β·(lp - q)²]; expected values worked by hand.

    token   lp     q     A     lp - q   (lp - q)²
    0      -0.5  -0.7   1.0     0.2      0.04
    1      -1.0  -1.1   2.0     0.1      0.01
    2      -0.2  -0.6  -1.0     0.4      0.16
    3      -2.0  -1.5  -0.5    -0.5      0.25
    4      -3.0   0.0   0.0    -3.0      9.00   (prompt position: A = 0, q padded with 0)
    5      -1.5  -1.0   1.5    -0.5      0.25

Gradient of -[lp·A - ½β(lp - q)²] with respect to lp: -A + β·(lp - q).
"""

import math

import torch

from losses.registry import get_loss

LP = [-0.5, -1.0, -0.2, -2.0, -3.0, -1.5]
Q = [-0.7, -1.1, -0.6, -1.5, 0.0, -1.0]
A = [1.0, 2.0, -1.0, -0.5, 0.0, 1.5]


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def loss_and_grad(beta):
    lp = f32(LP).requires_grad_()
    result = get_loss("dro").compute(lp, {"logprobs": f32(Q), "advantages": f32(A)}, {"beta": beta})
    (grad,) = torch.autograd.grad(result.loss, lp)
    return result, grad


def test_dro_default_beta_is_0_05():
    assert dict(get_loss("dro").config_defaults) == {"beta": 0.05}


def test_dro_loss_and_gradient_with_default_beta():
    result, grad = loss_and_grad(0.05)

    # ½β = 0.025. Per token, lp·A - 0.025·(lp - q)²:
    # token 0: -0.5·1    - 0.025·0.04 = -0.5   - 0.001   = -0.501
    # token 1: -1.0·2    - 0.025·0.01 = -2.0   - 0.00025 = -2.00025
    # token 2: -0.2·(-1) - 0.025·0.16 =  0.2   - 0.004   =  0.196
    # token 3: -2.0·(-0.5) - 0.025·0.25 = 1.0  - 0.00625 =  0.99375
    # token 4: -3.0·0    - 0.025·9    =  0     - 0.225   = -0.225   ← A = 0 still contributes
    # token 5: -1.5·1.5  - 0.025·0.25 = -2.25  - 0.00625 = -2.25625
    # loss = -(-0.501 - 2.00025 + 0.196 + 0.99375 - 0.225 - 2.25625) = -(-3.79275) = 3.79275
    expected_loss = -(-0.501 - 2.00025 + 0.196 + 0.99375 - 0.225 - 2.25625)
    # gradient -A + 0.05·(lp - q):
    # token 0: -1   + 0.05·0.2    = -0.99
    # token 1: -2   + 0.05·0.1    = -1.995
    # token 2:  1   + 0.05·0.4    =  1.02
    # token 3:  0.5 + 0.05·(-0.5) =  0.475
    # token 4:  0   + 0.05·(-3.0) = -0.15   ← pulls the prompt position's lp up toward q = 0
    # token 5: -1.5 + 0.05·(-0.5) = -1.525
    expected_grad = f32([-0.99, -1.995, 1.02, 0.475, -0.15, -1.525])

    torch.testing.assert_close(result.loss, torch.tensor(expected_loss))
    torch.testing.assert_close(grad, expected_grad)


def test_dro_with_zero_beta_ignores_zero_advantage_tokens():
    result, grad = loss_and_grad(0.0)

    # β = 0 leaves -Σ lp·A: -(-0.5 - 2.0 + 0.2 + 1.0 + 0 - 2.25) = 3.55; gradient -A
    torch.testing.assert_close(result.loss, torch.tensor(3.55))
    torch.testing.assert_close(grad, f32([-1.0, -2.0, 1.0, 0.5, 0.0, -1.5]))


def test_dro_metrics_run_over_tokens_with_nonzero_advantage():
    result, _ = loss_and_grad(0.05)

    # trained tokens 0, 1, 2, 3, 5 (the loss still touches token 4; the diagnostics do not)
    # ratio mean = (1.2214 + 1.1052 + 1.4918 + 0.6065 + 0.6065) / 5 = 1.0063
    expected_ratio = (math.exp(0.2) + math.exp(0.1) + math.exp(0.4) + 2 * math.exp(-0.5)) / 5
    # kl_sample_train = mean(q - lp) = 0.3 / 5 = 0.06
    expected_kl = 0.3 / 5

    assert set(result.metrics) == {"ratio:mean", "kl_sample_train:mean"}
    assert math.isclose(result.metrics["ratio:mean"], expected_ratio, rel_tol=1e-6)
    assert math.isclose(result.metrics["kl_sample_train:mean"], expected_kl, rel_tol=1e-5)
