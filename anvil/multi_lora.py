"""Multi-LoRA linear layers: one frozen base weight, many adapters, each batch row routed to one.

Every targeted `nn.Linear` of the base model is replaced by a `MultiLoraLinear` that keeps the base
layer and a dict of adapters. A shared `LoraRouting` says which contiguous rows of the current batch
belong to which adapter, so one base-model pass serves a batch mixing many adapters. An adapter's
parameters only ever touch its own rows: a mixed batch gives each adapter exactly the gradient it
would get alone.
"""

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

ATTN_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
MLP_TARGETS = ("gate_proj", "up_proj", "down_proj")
UNEMBED_TARGETS = ("lm_head",)
# Tinker's fixed LoRA alpha; the scale is alpha / rank and its LR guidance assumes it.
LORA_ALPHA = 32.0


@dataclass
class LoraWeights:
    """One adapter on one linear layer: delta(x) = scale * (x @ A^T) @ B^T."""

    lora_A: nn.Parameter  # [rank, in_features]
    lora_B: nn.Parameter  # [out_features, rank]
    scale: float


@dataclass
class Segment:
    adapter: str | None  # None: rows served by the base model alone
    start: int
    stop: int


@dataclass
class LoraRouting:
    """Which batch rows go to which adapter during the current forward pass."""

    segments: list[Segment] = field(default_factory=list)


class MultiLoraLinear(nn.Module):
    def __init__(self, base: nn.Linear, routing: LoraRouting):
        super().__init__()
        self.base = base
        self.routing = routing
        # adapters are owned by their Adapter objects, not registered here, so the shared base
        # model's state_dict and parameters() stay those of the frozen base
        self.adapters: dict[str, LoraWeights] = {}

    @property
    def in_features(self) -> int:
        return self.base.in_features

    @property
    def out_features(self) -> int:
        return self.base.out_features

    @property
    def weight(self) -> torch.Tensor:
        return self.base.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        segments = self.routing.segments
        if not any(seg.adapter in self.adapters for seg in segments):
            return out
        # one split and one cat: slicing per segment would make backward fill a full-size zero
        # gradient for every segment, which grows with the number of adapters in the batch
        x_parts = x.split([seg.stop - seg.start for seg in segments]) if len(segments) > 1 else (x,)
        deltas = []
        for seg, x_rows in zip(segments, x_parts, strict=True):
            lora = self.adapters.get(seg.adapter) if seg.adapter is not None else None
            if lora is None:
                deltas.append(out.new_zeros(*x_rows.shape[:-1], self.out_features))
                continue
            # the LoRA weights are float32 masters; the matmuls run in the activations' dtype
            # (bf16 on a bf16 base model, as autocast would), and their gradients come back to
            # the float32 weights through the casts. The rank-r activations are scaled, not the
            # (much wider) output.
            hidden = (x_rows @ lora.lora_A.to(x_rows.dtype).T) * lora.scale
            deltas.append(hidden @ lora.lora_B.to(x_rows.dtype).T)
        return out + (deltas[0] if len(deltas) == 1 else torch.cat(deltas, dim=0))


def target_names(train_attn: bool, train_mlp: bool, train_unembed: bool) -> tuple[str, ...]:
    return (
        (ATTN_TARGETS if train_attn else ())
        + (MLP_TARGETS if train_mlp else ())
        + (UNEMBED_TARGETS if train_unembed else ())
    )


def inject_multi_lora(model: nn.Module) -> tuple[LoraRouting, dict[str, MultiLoraLinear]]:
    """Wrap every linear a LoRA may target; returns the routing and the layers by module path."""
    routing = LoraRouting()
    wanted = set(ATTN_TARGETS + MLP_TARGETS + UNEMBED_TARGETS)
    layers: dict[str, MultiLoraLinear] = {}
    for path, module in list(model.named_modules()):
        for child_name, child in list(module.named_children()):
            if child_name in wanted and isinstance(child, nn.Linear):
                wrapped = MultiLoraLinear(child, routing)
                setattr(module, child_name, wrapped)
                layers[f"{path}.{child_name}" if path else child_name] = wrapped
    return routing, layers


def new_lora_weights(
    layer: MultiLoraLinear, rank: int, generator: torch.Generator, dtype: torch.dtype
) -> LoraWeights:
    """A fresh adapter: A from Kaiming-uniform (as PEFT does), B zero, so it starts as a no-op."""
    device = layer.weight.device
    bound = 1.0 / math.sqrt(layer.in_features)  # kaiming_uniform_ with a = sqrt(5)
    lora_a = (torch.rand(rank, layer.in_features, generator=generator, dtype=torch.float32) * 2 - 1) * bound
    return LoraWeights(
        lora_A=nn.Parameter(lora_a.to(device=device, dtype=dtype)),
        lora_B=nn.Parameter(torch.zeros(layer.out_features, rank, device=device, dtype=dtype)),
        scale=LORA_ALPHA / rank,
    )


@contextmanager
def routed(routing: LoraRouting, segments: list[Segment]) -> Iterator[None]:
    previous = routing.segments
    routing.segments = segments
    try:
        yield
    finally:
        routing.segments = previous
