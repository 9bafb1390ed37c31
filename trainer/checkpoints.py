"""Training checkpoints (adapter + optimizer state) and sampler checkpoints (adapter only).

Both keep the adapter in PEFT format, so any checkpoint's weights load in `peft` and vLLM; a
training checkpoint adds the AdamW state and what is needed to rebuild the model from it alone.
"""

import dataclasses
import json
from pathlib import Path

import torch

from anvil.checkpoint_folders import write_version
from anvil.peft_format import read_peft_adapter, write_peft_adapter
from anvil.types import LoraSpec
from trainer.adapter import Adapter
from trainer.errors import IncompatibleCheckpoint
from anvil.multi_lora import LORA_ALPHA

OPTIMIZER_FILE = "optimizer.pt"
STATE_FILE = "anvil_state.json"


def save_sampler_weights(adapter: Adapter, base_model: str, target: Path) -> Path:
    """Write the next version of checkpoint folder `target`; returns the version's folder."""
    return write_version(target, lambda staging: _write_adapter(adapter, base_model, staging))


def save_training_state(adapter: Adapter, base_model: str, target: Path) -> Path:
    """Write the next version of checkpoint folder `target`; returns the version's folder."""

    def write(staging: Path) -> None:
        _write_adapter(adapter, base_model, staging)
        torch.save(adapter.optimizer.state_dict(), staging / OPTIMIZER_FILE)
        state = {"base_model": base_model, "lora": dataclasses.asdict(adapter.spec), "steps": adapter.steps}
        (staging / STATE_FILE).write_text(json.dumps(state, indent=2))

    return write_version(target, write)


def read_training_meta(folder: Path) -> tuple[str, LoraSpec]:
    """Base model name and LoRA settings of a training checkpoint."""
    state = json.loads((folder / STATE_FILE).read_text())
    return state["base_model"], LoraSpec(**state["lora"])


def load_training_state(adapter: Adapter, folder: Path, with_optimizer: bool) -> None:
    _, weights = read_peft_adapter(folder)
    if set(weights) != set(adapter.weights):
        raise IncompatibleCheckpoint(
            "checkpoint targets different layers than this model "
            f"({len(weights)} LoRA layers in the checkpoint, {len(adapter.weights)} in the model)"
        )
    with torch.no_grad():
        for path, (lora_a, lora_b) in weights.items():
            target = adapter.weights[path]
            if target.lora_A.shape != lora_a.shape:
                raise IncompatibleCheckpoint(f"checkpoint rank {lora_a.shape[0]} differs from the model's {target.lora_A.shape[0]}")
            target.lora_A.copy_(lora_a)
            target.lora_B.copy_(lora_b)
    adapter.zero_grad()
    if with_optimizer:
        state = torch.load(folder / OPTIMIZER_FILE, weights_only=True)
        adapter.optimizer.load_state_dict(state)
        adapter.steps = json.loads((folder / STATE_FILE).read_text()).get("steps", 0)
    else:
        adapter.optimizer.state.clear()
        adapter.steps = 0


def _write_adapter(adapter: Adapter, base_model: str, folder: Path) -> None:
    weights = {path: (w.lora_A, w.lora_B) for path, w in adapter.weights.items()}
    write_peft_adapter(folder, weights, rank=adapter.spec.rank, alpha=LORA_ALPHA, base_model=base_model)
