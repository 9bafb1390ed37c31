"""One base model loaded once, shared by every adapter trained on it."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM

from trainer.logprobs import target_logprobs
from anvil.device import pick_device
from anvil.multi_lora import Segment, inject_multi_lora, routed


@dataclass
class Row:
    """One datum of a batch: its adapter, input tokens [N] and targets [N] or [N, K]."""

    adapter: str
    tokens: np.ndarray
    targets: np.ndarray


class BaseModelHost:
    def __init__(self, name: str, path: Path):
        self.name = name
        self.path = path
        self.device, self.dtype = pick_device()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype)
        model.requires_grad_(False)
        model.eval()  # no dropout: a step must be a pure function of weights and data
        self.model = model.to(self.device)
        self.routing, self.layers = inject_multi_lora(self.model)
        self.vocab_size = self.model.get_input_embeddings().num_embeddings

    def logprobs(self, rows: list[Row]) -> list[torch.Tensor]:
        """Trainer logprobs of each row's targets, shaped like them, in float32.

        Rows must come grouped by adapter (each adapter's rows contiguous). Under autograd the
        result carries gradients to exactly the adapters of the rows.
        """
        length = max(len(r.tokens) for r in rows)
        width = max(1 if r.targets.ndim == 1 else r.targets.shape[1] for r in rows)
        input_ids = torch.zeros(len(rows), length, dtype=torch.long)
        attention_mask = torch.zeros(len(rows), length, dtype=torch.long)
        targets = torch.zeros(len(rows), length, width, dtype=torch.long)
        for i, row in enumerate(rows):
            n = len(row.tokens)
            input_ids[i, :n] = torch.from_numpy(row.tokens)
            attention_mask[i, :n] = 1
            row_targets = torch.from_numpy(row.targets).reshape(n, -1)
            targets[i, :n, : row_targets.shape[1]] = row_targets
        segments = _segments(rows)
        with routed(self.routing, segments):
            hidden = self.model.model(
                input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device)
            ).last_hidden_state

        def project(hidden_chunk: torch.Tensor) -> torch.Tensor:
            with routed(self.routing, segments):
                return self.model.lm_head(hidden_chunk)

        lp_BTK = target_logprobs(project, self.model.lm_head.out_features, hidden, targets.to(self.device))
        out = []
        for i, row in enumerate(rows):
            n = len(row.tokens)
            lp = lp_BTK[i, :n]
            out.append(lp[:, 0] if row.targets.ndim == 1 else lp[:, : row.targets.shape[1]])
        return out


def _segments(rows: list[Row]) -> list[Segment]:
    segments: list[Segment] = []
    for i, row in enumerate(rows):
        if segments and segments[-1].adapter == row.adapter:
            segments[-1].stop = i + 1
        else:
            segments.append(Segment(row.adapter, i, i + 1))
    return segments
