"""One base model loaded once, shared by every adapter trained on it."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from trainer.length_buckets import length_buckets
from trainer.logprobs import HeadLora, LogitsWorkspace, target_logprobs
from anvil.device import pick_device
from anvil.multi_lora import MultiLoraLinear, Segment, inject_multi_lora, routed
from trainer.sharding import ShardGroup


@dataclass
class Row:
    """One datum of a batch: its adapter, input tokens [N] and targets [N] or [N, K]."""

    adapter: str
    tokens: np.ndarray
    targets: np.ndarray


class BaseModelHost:
    def __init__(self, name: str, path: Path, precision: str | None = None, shards: ShardGroup | None = None):
        self.name = name
        self.path = path
        self.device, self.dtype = pick_device(precision)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        model.requires_grad_(False)
        model.eval()  # no dropout: a step must be a pure function of weights and data
        self.model = model.to(self.device)
        self.routing, self.layers = inject_multi_lora(self.model)
        # None: the whole model on this process's device; else its decoder layers sharded over a
        # group of processes (trainer/sharding.py)
        self.shards = shards
        if shards is not None:
            shards.shard(self.model)
        self.vocab_size = self.model.get_input_embeddings().num_embeddings
        lm_head = self.model.lm_head
        if not isinstance(lm_head, MultiLoraLinear):
            raise ValueError(f"{name}: the lm_head is a {type(lm_head).__name__}, not a linear layer")
        self.lm_head = lm_head
        self.workspace = LogitsWorkspace()

    def logprobs(self, rows: list[Row]) -> list[torch.Tensor]:
        """Trainer logprobs of each row's targets, shaped like them, in float32.

        Rows must come grouped by adapter (each adapter's rows contiguous). Under autograd the
        result carries gradients to exactly the adapters of the rows.
        """
        width = max(1 if r.targets.ndim == 1 else r.targets.shape[1] for r in rows)
        hidden_parts, target_parts, loras, placed = [], [], [], []
        offset = 0
        lengths = [len(r.tokens) for r in rows]
        # a sharded model runs one forward pass per call on every rank, whatever its rows' lengths
        buckets = [list(range(len(rows)))] if self.shards is not None else length_buckets(lengths)
        for bucket in buckets:
            group = [rows[i] for i in bucket]
            hidden_parts.append(self._hidden_states(group))
            segments = _segments(group)
            starts = offset + np.concatenate([[0], np.cumsum([len(r.tokens) for r in group])])
            loras += self._head_loras(segments, starts)
            for i, row, start, stop in zip(bucket, group, starts[:-1], starts[1:], strict=True):
                row_targets = torch.from_numpy(row.targets).reshape(len(row.tokens), -1)
                target_parts.append(torch.nn.functional.pad(row_targets, (0, width - row_targets.shape[1])))
                placed.append((i, int(start), int(stop)))
            offset = int(starts[-1])
        hidden_NH = hidden_parts[0] if len(hidden_parts) == 1 else torch.cat(hidden_parts)
        targets_NK = torch.cat(target_parts).to(self.device)
        lp_NK = target_logprobs(hidden_NH, targets_NK, self.lm_head.weight, loras, self.workspace)
        out: list[torch.Tensor | None] = [None] * len(rows)
        for i, start, stop in placed:
            lp = lp_NK[start:stop]
            out[i] = lp[:, 0] if rows[i].targets.ndim == 1 else lp[:, : rows[i].targets.shape[1]]
        return out  # type: ignore[return-value]

    def _hidden_states(self, rows: list[Row]) -> torch.Tensor:
        """The base model's last hidden states of every real token of `rows`, [tokens, hidden],
        row after row."""
        lengths = [len(r.tokens) for r in rows]
        length = max(lengths)
        input_ids = torch.zeros(len(rows), length, dtype=torch.long)
        for i, row in enumerate(rows):
            input_ids[i, : lengths[i]] = torch.from_numpy(row.tokens)
        with routed(self.routing, _segments(rows)):
            # rows are padded on the right, so causal attention alone keeps every real token
            # from seeing padding: no mask, and attention takes its causal fast path
            hidden = self.model.model(**self._inputs(input_ids.to(self.device))).last_hidden_state
        # the lm_head runs on real tokens only, as one 2-D [tokens, hidden] matrix
        hidden_NH = hidden.reshape(-1, hidden.shape[-1])
        if min(lengths) == length:
            return hidden_NH
        real = torch.arange(length).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)
        return hidden_NH[real.reshape(-1).to(self.device)]

    def _inputs(self, input_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.shards is None or not torch.is_grad_enabled():
            return {"input_ids": input_ids}
        # Sharded, under autograd: the embeddings become a leaf that requires grad, so the
        # backward pass runs through every decoder layer on every rank, and with it each layer's
        # all-gather, even on a rank whose rows train no LoRA there (an lm_head-only adapter, or
        # an empty share); otherwise the ranks' collectives would not pair up.
        embeds = self.model.get_input_embeddings()(input_ids)
        return {"inputs_embeds": embeds.detach().requires_grad_(True)}

    def _head_loras(self, segments: list[Segment], starts: np.ndarray) -> list[HeadLora]:
        """The lm_head LoRA of each segment, over its rows' token span."""
        loras = []
        for seg in segments:
            lora = self.lm_head.adapters.get(seg.adapter) if seg.adapter is not None else None
            if lora is not None:
                loras.append(HeadLora(int(starts[seg.start]), int(starts[seg.stop]), lora.lora_A, lora.lora_B, lora.scale))
        return loras


def _segments(rows: list[Row]) -> list[Segment]:
    segments: list[Segment] = []
    for i, row in enumerate(rows):
        if segments and segments[-1].adapter == row.adapter:
            segments[-1].stop = i + 1
        else:
            segments.append(Segment(row.adapter, i, i + 1))
    return segments
