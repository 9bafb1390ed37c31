"""One training model: a LoRA adapter on a shared base model, with its own AdamW state."""

import os

import torch
from torch import nn

from anvil.types import AdamStep, LoraSpec
from anvil.multi_lora import LoraWeights, MultiLoraLinear, new_lora_weights, target_names


def random_seed() -> int:
    return int.from_bytes(os.urandom(8), "little") >> 1


class Adapter:
    def __init__(self, key: str, spec: LoraSpec, layers: dict[str, MultiLoraLinear], dtype: torch.dtype):
        self.key = key
        self.spec = spec
        targets = target_names(spec.train_attn, spec.train_mlp, spec.train_unembed)
        seed = spec.seed if spec.seed is not None else random_seed()
        generator = torch.Generator().manual_seed(seed)
        # sorted paths: parameter order, and so the optimizer state layout, is reproducible
        self.weights: dict[str, LoraWeights] = {
            path: new_lora_weights(layers[path], spec.rank, generator, dtype)
            for path in sorted(layers)
            if path.rsplit(".", 1)[-1] in targets
        }
        self._layers = {path: layers[path] for path in self.weights}
        # decoupled weight decay as torch applies it: p <- p * (1 - lr * weight_decay). The fused
        # kernel (CPU and CUDA) takes half the time of the per-tensor loop on a 151k-row lm_head
        # LoRA, with the same update
        self.optimizer = torch.optim.AdamW(self.parameters(), lr=1e-4, fused=True)
        self.steps = 0

    def parameters(self) -> list[nn.Parameter]:
        return [p for w in self.weights.values() for p in (w.lora_A, w.lora_B)]

    def attach(self) -> None:
        for path, weights in self.weights.items():
            self._layers[path].adapters[self.key] = weights

    def detach(self) -> None:
        for path in self.weights:
            self._layers[path].adapters.pop(self.key, None)

    def optim_step(self, step: AdamStep) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group.update(
                lr=step.learning_rate,
                betas=(step.beta1, step.beta2),
                eps=step.eps,
                weight_decay=step.weight_decay,
            )
        params = [p for p in self.parameters() if p.grad is not None]
        metrics: dict[str, float] = {}
        if params:
            max_norm = step.grad_clip_norm if step.grad_clip_norm > 0 else float("inf")
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
            metrics["grad_norm:mean"] = float(grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.steps += 1
        return metrics

    def zero_grad(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
