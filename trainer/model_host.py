"""One base model loaded once, shared by every adapter trained on it."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from trainer.logprobs import HeadLora, LogitsWorkspace, target_logprobs
from anvil.device import pick_device
from anvil.multi_lora import MultiLoraLinear, Segment, inject_multi_lora, routed


@dataclass
class Row:
    """One datum of a batch: its adapter, input tokens [N] and targets [N] or [N, K]."""

    adapter: str
    tokens: np.ndarray
    targets: np.ndarray


class BaseModelHost:
    def __init__(self, name: str, path: Path, precision: str | None = None):
        self.name = name
        self.path = path
        self.device, self.dtype = pick_device(precision)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        model.requires_grad_(False)
        model.eval()  # no dropout: a step must be a pure function of weights and data
        self.model = model.to(self.device)
        self.routing, self.layers = inject_multi_lora(self.model)
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
        lengths = [len(r.tokens) for r in rows]
        length = max(lengths)
        width = max(1 if r.targets.ndim == 1 else r.targets.shape[1] for r in rows)
        input_ids = torch.zeros(len(rows), length, dtype=torch.long)
        attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
        targets = torch.zeros(sum(lengths), width, dtype=torch.long)
        offset = 0
        for i, row in enumerate(rows):
            n = lengths[i]
            input_ids[i, :n] = torch.from_numpy(row.tokens)
            attention_mask[i, :n] = 1
            row_targets = torch.from_numpy(row.targets).reshape(n, -1)
            targets[offset : offset + n, : row_targets.shape[1]] = row_targets
            offset += n
        segments = _segments(rows)
        with routed(self.routing, segments):
            hidden = self.model.model(
                # rows are padded on the right, so causal attention alone keeps every real token
                # from seeing padding: no mask, and attention takes its causal fast path
                input_ids=input_ids.to(self.device)
            ).last_hidden_state
        # the lm_head runs on real tokens only, as one 2-D [tokens, hidden] matrix
        hidden_NH = hidden.reshape(-1, hidden.shape[-1])
        if min(lengths) != length:
            hidden_NH = hidden_NH[attention_mask.reshape(-1).bool().to(self.device)]
        starts = np.concatenate([[0], np.cumsum(lengths)])
        lp_NK = target_logprobs(
            hidden_NH, targets.to(self.device), self.lm_head.weight, self._head_loras(segments, starts), self.workspace
        )
        out = []
        for i, row in enumerate(rows):
            lp = lp_NK[starts[i] : starts[i + 1]]
            out.append(lp[:, 0] if row.targets.ndim == 1 else lp[:, : row.targets.shape[1]])
        return out

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
