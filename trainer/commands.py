"""What the gateway asks of the trainer, and what comes back: plain data only.

Commands and results hold primitives, str paths, numpy arrays and the work types of anvil/types.py,
never torch objects, callables or gateway state, so they pickle and can cross a process boundary
(a subprocess, a Ray actor) unchanged. A `TrainerPool` (trainer/pool.py) runs them.

`ForwardBackward` (a forward when `work.forward_only`) is batched across models in one trainer
call; every other command is a barrier that runs alone, in its model's seq order. Creating a model
from a checkpoint is its own command rather than a flag on `LoadState`: it names no base model or
LoRA settings, since both come from the checkpoint.
"""

from dataclasses import dataclass
from typing import Literal

from anvil.types import AdamStep, ForwardBackwardResult, ForwardBackwardWork, LoraSpec

# commands


@dataclass(frozen=True)
class CreateModel:
    model_id: str
    base_model: str
    spec: LoraSpec


@dataclass(frozen=True)
class CreateModelFromState:
    """A new model whose base model, LoRA settings and weights come from a training checkpoint."""

    model_id: str
    folder: str
    with_optimizer: bool


@dataclass(frozen=True)
class ForwardBackward:
    model_id: str
    work: ForwardBackwardWork


@dataclass(frozen=True)
class OptimStep:
    model_id: str
    step: AdamStep


@dataclass(frozen=True)
class SaveState:
    """Adapter + AdamW state, enough to resume training or create a model from it. `folder` is the
    checkpoint's folder; the save writes its next version inside (anvil/checkpoint_folders.py)."""

    model_id: str
    folder: str


@dataclass(frozen=True)
class SaveSamplerWeights:
    """The adapter alone, in PEFT format; `folder` as in `SaveState`."""

    model_id: str
    folder: str


@dataclass(frozen=True)
class LoadState:
    """Training state of a checkpoint into an existing model of the same base model and rank."""

    model_id: str
    folder: str
    with_optimizer: bool


@dataclass(frozen=True)
class Unload:
    """Drop a model's adapter and optimizer state from the trainer; unknown models are ignored."""

    model_id: str


BarrierCommand = CreateModel | CreateModelFromState | OptimStep | SaveState | SaveSamplerWeights | LoadState | Unload
Command = ForwardBackward | BarrierCommand


# results (ForwardBackward's is anvil.types.ForwardBackwardResult, as the trainer returns it)


@dataclass(frozen=True)
class CreateResult:
    model_id: str


@dataclass(frozen=True)
class OptimStepResult:
    metrics: dict[str, float]


@dataclass(frozen=True)
class SaveResult:
    """The version folder a save wrote, completely written and renamed into place."""

    folder: str
    size_bytes: int


@dataclass(frozen=True)
class LoadResult:
    model_id: str


@dataclass(frozen=True)
class UnloadResult:
    model_id: str


@dataclass(frozen=True)
class CommandFailure:
    """A command that did not run to the end. "user": the request's fault (a checkpoint that does not
    fit the model, unusable loss inputs), reported to the client as is; "server": anything else."""

    category: Literal["user", "server"]
    message: str


BarrierResult = CreateResult | OptimStepResult | SaveResult | LoadResult | UnloadResult
Result = ForwardBackwardResult | BarrierResult
