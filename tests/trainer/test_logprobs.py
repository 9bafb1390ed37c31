"""The fused target logprobs equal a plain log_softmax over full logits: values and gradients, with
lm_head LoRAs on some row spans, across chunk boundaries, in float32 exactly and in bf16 closely."""

import pytest
import torch

from trainer import logprobs
from trainer.logprobs import HeadLora, LogitsWorkspace, target_logprobs

VOCAB, HIDDEN, RANK, ROWS = 50, 16, 4, 23


def _problem(dtype: torch.dtype):
    generator = torch.Generator().manual_seed(0)
    weight = (torch.randn(VOCAB, HIDDEN, generator=generator) / 4).to(dtype)
    hidden = torch.randn(ROWS, HIDDEN, generator=generator).to(dtype).requires_grad_()
    targets = torch.randint(0, VOCAB, (ROWS, 2), generator=generator)
    loras = [
        # two adapters on two spans; rows 0-2 and 20-22 have no lm_head LoRA
        HeadLora(3, 11, torch.randn(RANK, HIDDEN, generator=generator).requires_grad_(),
                 (torch.randn(VOCAB, RANK, generator=generator) / 8).requires_grad_(), 0.5),
        HeadLora(11, 20, torch.randn(RANK, HIDDEN, generator=generator).requires_grad_(),
                 (torch.randn(VOCAB, RANK, generator=generator) / 8).requires_grad_(), 2.0),
    ]
    upstream = torch.randn(ROWS, 2, generator=generator)
    return weight, hidden, targets, loras, upstream


def _reference(weight, hidden, targets, loras):
    logits = hidden.float() @ weight.float().T
    deltas = torch.zeros_like(logits)
    rows = torch.arange(ROWS)
    for lora in loras:
        in_span = ((rows >= lora.start) & (rows < lora.stop)).float()[:, None]
        deltas = deltas + in_span * (lora.scale * (hidden.float() @ lora.lora_A.T) @ lora.lora_B.T)
    return torch.log_softmax(logits + deltas, -1).gather(-1, targets)


def _grads(output, upstream, hidden, loras):
    leaves = [hidden, *(t for lora in loras for t in (lora.lora_A, lora.lora_B))]
    return torch.autograd.grad((output * upstream).sum(), leaves)


@pytest.mark.parametrize("chunk_rows", [1, 5, ROWS])
def test_fused_logprobs_and_gradients_equal_full_logits_in_fp32(monkeypatch, chunk_rows):
    # the byte budget decides the chunk; 1 and 5 rows put chunk edges inside the LoRA spans
    monkeypatch.setattr(logprobs, "LOGITS_CHUNK_BYTES", chunk_rows * 4 * VOCAB)
    weight, hidden, targets, loras, upstream = _problem(torch.float32)
    fused = target_logprobs(hidden, targets, weight, loras, LogitsWorkspace())
    full = _reference(weight, hidden, targets, loras)
    torch.testing.assert_close(fused, full, rtol=1e-5, atol=1e-5)
    for got, want in zip(_grads(fused, upstream, hidden, loras), _grads(full, upstream, hidden, loras), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_fused_logprobs_in_bf16_stay_close_to_fp32():
    weight, hidden, targets, loras, upstream = _problem(torch.bfloat16)
    fused = target_logprobs(hidden, targets, weight, loras, LogitsWorkspace())
    assert fused.dtype == torch.float32
    full = _reference(weight, hidden, targets, loras)  # the same bf16 inputs, in float32
    # the logits round to bf16 (8 significant bits) before the float32 log-softmax: an error of
    # up to 2^-8 of the largest logit
    largest_logit = (hidden.float() @ weight.float().T).abs().max()
    assert (fused - full).abs().max() <= 2**-8 * largest_logit * 2
    for got, want in zip(_grads(fused, upstream, hidden, loras), _grads(full, upstream, hidden, loras), strict=True):
        scale = want.abs().max()
        assert (got.float() - want).abs().max() <= 0.02 * scale


def test_forward_without_autograd_needs_no_graph():
    weight, hidden, targets, loras, _ = _problem(torch.float32)
    with torch.no_grad():
        fused = target_logprobs(hidden, targets, weight, loras, LogitsWorkspace())
    assert not fused.requires_grad
    torch.testing.assert_close(fused, _reference(weight, hidden, targets, loras).detach(), rtol=1e-5, atol=1e-5)
