"""optim_step honours every AdamParams field, checked against AdamW written out by hand."""

import math

import torch

from anvil.types import AdamStep, LoraSpec
from trainer.adapter import Adapter
from anvil.multi_lora import MultiLoraLinear, LoraRouting


def _adapter() -> Adapter:
    layer = MultiLoraLinear(torch.nn.Linear(3, 2, bias=False), LoraRouting())
    return Adapter("m", LoraSpec(rank=2, seed=0, train_attn=False, train_mlp=False), {"lm_head": layer}, torch.float32)


def _reference_adamw(params, grads_per_step, steps: list[AdamStep]):
    """AdamW with global-norm clipping and decoupled weight decay, step by step."""
    params = [p.detach().clone() for p in params]
    m = [torch.zeros_like(p) for p in params]
    v = [torch.zeros_like(p) for p in params]
    for t, (grads, s) in enumerate(zip(grads_per_step, steps, strict=True), start=1):
        norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
        clip = min(1.0, s.grad_clip_norm / (norm + 1e-6)) if s.grad_clip_norm > 0 else 1.0
        for i, g in enumerate(grads):
            g = g * clip
            params[i] = params[i] * (1 - s.learning_rate * s.weight_decay)
            m[i] = s.beta1 * m[i] + (1 - s.beta1) * g
            v[i] = s.beta2 * v[i] + (1 - s.beta2) * g * g
            m_hat = m[i] / (1 - s.beta1**t)
            v_hat = v[i] / (1 - s.beta2**t)
            params[i] = params[i] - s.learning_rate * m_hat / (v_hat.sqrt() + s.eps)
    return params


def test_optim_step_matches_hand_written_adamw():
    adapter = _adapter()
    start = [p.detach().clone() for p in adapter.parameters()]
    torch.manual_seed(0)
    grads_per_step = [[torch.randn_like(p) * scale for p in start] for scale in (5.0, 0.1, 2.0)]
    steps = [
        AdamStep(learning_rate=0.1, beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.5, grad_clip_norm=1.0),
        AdamStep(learning_rate=0.05, beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.5, grad_clip_norm=1.0),
        AdamStep(learning_rate=0.2, beta1=0.8, beta2=0.9, eps=1e-3, weight_decay=0.0, grad_clip_norm=0.0),
    ]
    metrics = []
    for grads, step in zip(grads_per_step, steps, strict=True):
        for p, g in zip(adapter.parameters(), grads, strict=True):
            p.grad = g.clone()
        metrics.append(adapter.optim_step(step))
    expected = _reference_adamw(start, grads_per_step, steps)
    for p, e in zip(adapter.parameters(), expected, strict=True):
        torch.testing.assert_close(p.detach(), e, rtol=1e-5, atol=1e-6)
    # the reported norm is the norm before clipping
    first_norm = math.sqrt(sum(float((g**2).sum()) for g in grads_per_step[0]))
    assert math.isclose(metrics[0]["grad_norm:mean"], first_norm, rel_tol=1e-5)
    assert all(p.grad is None for p in adapter.parameters()), "optim_step clears the gradients"


def test_each_field_changes_the_update():
    baseline = AdamStep(learning_rate=0.1, beta1=0.9, beta2=0.95, eps=1e-8, weight_decay=0.0, grad_clip_norm=0.0)
    variants = {
        "learning_rate": AdamStep(**{**baseline.__dict__, "learning_rate": 0.2}),
        "beta1": AdamStep(**{**baseline.__dict__, "beta1": 0.5}),
        "beta2": AdamStep(**{**baseline.__dict__, "beta2": 0.5}),
        "eps": AdamStep(**{**baseline.__dict__, "eps": 10.0}),
        "weight_decay": AdamStep(**{**baseline.__dict__, "weight_decay": 0.9}),
        "grad_clip_norm": AdamStep(**{**baseline.__dict__, "grad_clip_norm": 0.01}),
    }

    def run(step: AdamStep) -> list[torch.Tensor]:
        adapter = _adapter()
        with torch.no_grad():
            for p in adapter.parameters():
                p.fill_(0.5)
        torch.manual_seed(1)
        for scale in (3.0, 0.2):
            for p in adapter.parameters():
                p.grad = torch.randn_like(p) * scale
            adapter.optim_step(step)
        return [p.detach().clone() for p in adapter.parameters()]

    reference = run(baseline)
    for name, step in variants.items():
        changed = run(step)
        assert any(not torch.allclose(a, b) for a, b in zip(reference, changed)), name
