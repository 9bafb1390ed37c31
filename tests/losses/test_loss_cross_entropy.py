"""cross_entropy: loss = -Σ w·lp over every token (and every k of (N, K) targets); gradient -w."""

import torch

from losses.registry import get_loss


def f32(values):
    return torch.tensor(values, dtype=torch.float32)


def test_cross_entropy_with_negative_and_fractional_weights_on_top_k_targets():
    # N = 3 positions, K = 2 targets each
    lp = f32([[-0.1, -2.0], [-0.5, -1.5], [-3.0, -0.2]]).requires_grad_()
    weights = f32([[0.5, 0.25], [-1.0, 0.0], [0.25, -0.5]])
    result = get_loss("cross_entropy").compute(lp, {"weights": weights}, {})
    (grad,) = torch.autograd.grad(result.loss, lp)

    # w·lp: 0.5·(-0.1) = -0.05, 0.25·(-2.0) = -0.5, (-1.0)·(-0.5) = 0.5, 0·(-1.5) = 0,
    #       0.25·(-3.0) = -0.75, (-0.5)·(-0.2) = 0.1
    # loss = -(-0.05 - 0.5 + 0.5 + 0 - 0.75 + 0.1) = -(-0.7) = 0.7
    torch.testing.assert_close(result.loss, torch.tensor(0.7))
    # d(-w·lp)/dlp = -w; a negative weight pushes lp down
    torch.testing.assert_close(grad, -weights)


def test_cross_entropy_fractional_sft_weights_on_one_target_per_position():
    # an SFT datum whose four completion weights sum to 1; the prompt position has weight 0
    lp = f32([-5.0, -1.0, -2.0, -0.5, -0.5]).requires_grad_()
    weights = f32([0.0, 0.25, 0.25, 0.25, 0.25])
    result = get_loss("cross_entropy").compute(lp, {"weights": weights}, {})
    (grad,) = torch.autograd.grad(result.loss, lp)

    # loss = -(0·(-5) + 0.25·(-1) + 0.25·(-2) + 0.25·(-0.5) + 0.25·(-0.5)) = -(-1.0) = 1.0
    torch.testing.assert_close(result.loss, torch.tensor(1.0))
    torch.testing.assert_close(grad, f32([0.0, -0.25, -0.25, -0.25, -0.25]))


def test_cross_entropy_missing_weights_default_to_one():
    spec = get_loss("cross_entropy")
    assert dict(spec.optional_inputs) == {"weights": 1.0}
    assert spec.required_inputs == ()
    assert dict(spec.config_defaults) == {}
