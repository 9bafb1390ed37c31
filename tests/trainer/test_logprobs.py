"""Chunked target logprobs equal a plain log_softmax over full logits, values and gradients."""

import torch

from trainer import logprobs


def test_chunked_logprobs_match_full_log_softmax(monkeypatch):
    torch.manual_seed(0)
    lm_head = torch.nn.Linear(16, 50, bias=False)
    hidden = torch.randn(3, 11, 16, requires_grad=True)
    targets = torch.randint(0, 50, (3, 11, 2))
    # a tiny budget forces many chunks (2 positions each for this batch and vocabulary)
    monkeypatch.setattr(logprobs, "LOGITS_CHUNK_ELEMENTS", 3 * 50 * 2)
    chunked = logprobs.target_logprobs(lm_head, 50, hidden, targets)
    full = torch.log_softmax(lm_head(hidden).float(), -1).gather(-1, targets)
    torch.testing.assert_close(chunked, full)
    weights = torch.randn_like(full)
    (g_chunked,) = torch.autograd.grad((chunked * weights).sum(), hidden)
    (g_full,) = torch.autograd.grad((full * weights).sum(), hidden)
    torch.testing.assert_close(g_chunked, g_full)
