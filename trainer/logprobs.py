"""Log-probabilities of target tokens without a float32 [tokens x vocab] tensor.

On 150k-token vocabularies the full logits are the memory bottleneck of training. The lm_head runs
over chunks of positions; each chunk keeps only its logsumexp and the picked target logits, and under
autograd the chunk is checkpointed, so backward recomputes its logits instead of storing them.
"""

from collections.abc import Callable

import torch
from torch.utils.checkpoint import checkpoint

# logits elements materialised at once (float32: 4 bytes each, so 64 MiB)
LOGITS_CHUNK_ELEMENTS = 1 << 24


def target_logprobs(
    project: Callable[[torch.Tensor], torch.Tensor], vocab: int, hidden_BTH: torch.Tensor, targets_BTK: torch.Tensor
) -> torch.Tensor:
    """log p(targets_BTK[b, t, k] | position t) for every row, position and target column.

    `project` maps hidden states to logits (the lm_head). It runs again during backward, so it must
    set up whatever state it depends on (the LoRA routing) itself.
    """
    batch, length, _ = hidden_BTH.shape
    chunk = max(1, LOGITS_CHUNK_ELEMENTS // max(1, batch * vocab))
    pieces = []
    for start in range(0, length, chunk):
        hidden = hidden_BTH[:, start : start + chunk]
        targets = targets_BTK[:, start : start + chunk]
        if torch.is_grad_enabled() and hidden.requires_grad:
            pieces.append(checkpoint(_chunk_logprobs, project, hidden, targets, use_reentrant=False))
        else:
            pieces.append(_chunk_logprobs(project, hidden, targets))
    return torch.cat(pieces, dim=1)


def _chunk_logprobs(
    project: Callable[[torch.Tensor], torch.Tensor], hidden: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    logits = project(hidden).float()
    normaliser = torch.logsumexp(logits, dim=-1, keepdim=True)
    return torch.gather(logits, -1, targets) - normaliser
