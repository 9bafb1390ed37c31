"""Log-probabilities of target tokens, fused with the lm_head, without a [tokens x vocab] tensor.

On 150k-token vocabularies the lm_head and its softmax are most of a training step and the full
logits are its memory bottleneck. `target_logprobs` runs the lm_head over chunks of token rows
(2-D matmuls) into one reused buffer and keeps only each row's target logprobs. Its backward
recomputes a chunk's logits, turns them into the softmax in place and writes
dL/dh = G·W_eff, with G = scatter(g) − softmax·Σg, as `P @ W` scaled per row plus the gathered
target rows, so neither G nor the logits are ever stored, and no full-vocabulary scatter runs.

The matmuls run in the base weights' dtype (bf16 where the device multiplies it fast); the
log-softmax, the logprobs and every LoRA gradient are float32.

The lm_head may carry LoRA adapters, one per contiguous span of rows (the multi-LoRA routing):
logits = h·Wᵀ + s·(h·Aᵀ)·Bᵀ. Their gradients are computed here too:
dL/dB = Gᵀ·u with u = s·h·Aᵀ, and dL/dA = s·(G·B)ᵀ·h.
"""

from dataclasses import dataclass

import torch

# bytes of float32 logits materialised at once; chunks hold this many bytes whatever the
# vocabulary, so memory stays bounded and matmuls stay large (256 MiB: ~440 rows of 152k)
LOGITS_CHUNK_BYTES = 256 << 20


@dataclass
class HeadLora:
    """One adapter's LoRA on the lm_head, applied to token rows [start, stop)."""

    start: int
    stop: int
    lora_A: torch.Tensor  # [rank, hidden]
    lora_B: torch.Tensor  # [vocab, rank]
    scale: float


class LogitsWorkspace:
    """Chunk buffers reused across chunks and calls: a fresh 100+ MB tensor per chunk costs more
    in page faults (CPU) than the softmax that fills it."""

    def __init__(self) -> None:
        self._buffers: dict[tuple, torch.Tensor] = {}

    def buffer(self, name: str, rows: int, vocab: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        key = (name, vocab, dtype, device)
        held = self._buffers.get(key)
        if held is None or held.shape[0] < rows:
            self._buffers.pop(key, None)
            held = self._buffers[key] = torch.empty(rows, vocab, dtype=dtype, device=device)
        return held[:rows]


def chunk_bounds(rows: int, vocab: int) -> list[tuple[int, int]]:
    """[start, stop) of each chunk: as few as the byte budget allows, of equal size (a small
    last chunk would run its matmuls less efficiently)."""
    largest = max(1, LOGITS_CHUNK_BYTES // (4 * vocab))
    count = -(-rows // largest)
    size = -(-rows // count) if count else 0
    return [(start, min(rows, start + size)) for start in range(0, rows, size or 1)]


def target_logprobs(
    hidden_NH: torch.Tensor,
    targets_NK: torch.Tensor,
    weight_VH: torch.Tensor,
    loras: list[HeadLora],
    workspace: LogitsWorkspace,
) -> torch.Tensor:
    """log p(targets_NK[n, k] | hidden_NH[n]) in float32, for every row n and target column k.

    `weight_VH` is the frozen lm_head weight; `loras` are the lm_head adapters of row spans
    (rows outside every span use the base weight alone). Gradients flow to `hidden_NH` and to
    every `lora_A`/`lora_B` that requires them.
    """
    params = [t for lora in loras for t in (lora.lora_A, lora.lora_B)]
    spans = [(lora.start, lora.stop, lora.scale) for lora in loras]
    return _FusedTargetLogprobs.apply(hidden_NH, targets_NK, weight_VH, spans, workspace, *params)


def _chunk_loras(spans, params, start: int, stop: int):
    """The LoRA spans inside rows [start, stop), relative to `start`."""
    for index, (lo, hi, scale) in enumerate(spans):
        lo, hi = max(lo, start), min(hi, stop)
        if lo < hi:
            yield lo - start, hi - start, params[2 * index], params[2 * index + 1], scale, index


def _matmul_copies(params, dtype: torch.dtype) -> list[torch.Tensor]:
    """The LoRA weights in the matmul dtype, converted once per call rather than once per chunk."""
    return [p.detach().to(dtype) for p in params]


def _logits(out: torch.Tensor, hidden: torch.Tensor, weight: torch.Tensor, loras) -> torch.Tensor:
    torch.mm(hidden, weight.T, out=out)
    for lo, hi, lora_a, lora_b, scale, _ in loras:
        u = (hidden[lo:hi] @ lora_a.T) * scale
        out[lo:hi].addmm_(u, lora_b.T)
    return out


class _FusedTargetLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, targets, weight, spans, workspace, *params):
        rows, vocab = hidden.shape[0], weight.shape[0]
        logprobs = torch.empty(targets.shape, dtype=torch.float32, device=hidden.device)
        copies = _matmul_copies(params, hidden.dtype)
        for start, stop in chunk_bounds(rows, vocab):
            logits = workspace.buffer("logits", stop - start, vocab, hidden.dtype, hidden.device)
            _logits(logits, hidden[start:stop], weight, list(_chunk_loras(spans, copies, start, stop)))
            if logits.dtype == torch.float32:
                scores = logits
            else:
                scores = workspace.buffer("scores", stop - start, vocab, torch.float32, hidden.device)
                scores.copy_(logits)
            torch._log_softmax(scores, 1, False, out=scores)
            logprobs[start:stop] = scores.gather(1, targets[start:stop])
        ctx.save_for_backward(hidden, targets, weight, *params)
        ctx.spans, ctx.workspace = spans, workspace
        return logprobs

    @staticmethod
    def backward(ctx, grad_NK):
        hidden, targets, weight, *params = ctx.saved_tensors
        rows, vocab = hidden.shape[0], weight.shape[0]
        grad_NK = grad_NK.float()
        grad_sum = grad_NK.sum(1, keepdim=True)
        grad_hidden = torch.empty_like(hidden) if ctx.needs_input_grad[0] else None
        param_grads = [torch.zeros_like(p, dtype=torch.float32) for p in params]
        copies = _matmul_copies(params, hidden.dtype)
        for start, stop in chunk_bounds(rows, vocab):
            h, t = hidden[start:stop], targets[start:stop]
            g, g_sum = grad_NK[start:stop], grad_sum[start:stop]
            logits = ctx.workspace.buffer("logits", stop - start, vocab, hidden.dtype, hidden.device)
            probs = torch._softmax(_logits(logits, h, weight, list(_chunk_loras(ctx.spans, copies, start, stop))), 1, False, out=logits)
            # G·W = scatter(g)·W − Σg · (P·W): the target rows of W, minus the softmax-weighted mean
            grad_h = (g.unsqueeze(-1) * weight[t].float()).sum(1) - g_sum * (probs @ weight).float()
            for lo, hi, lora_a, lora_b, scale, index in _chunk_loras(ctx.spans, params, start, stop):
                a, b, h_rows = lora_a.detach(), lora_b.detach(), h[lo:hi].float()
                b_matmul = copies[2 * index + 1]
                g_rows, g_sum_rows, t_rows = g[lo:hi], g_sum[lo:hi], t[lo:hi]
                # G·B, [rows, rank]
                grad_b_side = (g_rows.unsqueeze(-1) * b[t_rows].float()).sum(1) - g_sum_rows * (
                    probs[lo:hi] @ b_matmul
                ).float()
                grad_h[lo:hi] += scale * grad_b_side @ a.float()
                param_grads[2 * index] += scale * grad_b_side.T @ h_rows
                u = (h_rows @ a.float().T) * scale
                # Gᵀ·u = scatter(g ⊗ u) − Pᵀ·(Σg · u), [vocab, rank]
                param_grads[2 * index + 1] -= (probs[lo:hi].T @ (g_sum_rows * u).to(probs.dtype)).float()
                param_grads[2 * index + 1].index_add_(
                    0, t_rows.reshape(-1), (g_rows.unsqueeze(-1) * u.unsqueeze(1)).reshape(-1, u.shape[1])
                )
            if grad_hidden is not None:
                grad_hidden[start:stop] = grad_h.to(hidden.dtype)
        grads = [grad.to(p.dtype) if ctx.needs_input_grad[5 + i] else None for i, (grad, p) in enumerate(zip(param_grads, params))]
        return (grad_hidden, None, None, None, None, *grads)
