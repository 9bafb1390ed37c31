"""The trainer pool: where the press sends commands, in-process today.

The press only sees `TrainerPool`, so the trainer can move into a subprocess or a Ray actor without
the press changing. Failures come back as `CommandFailure` values rather than exceptions, since an
exception (and its traceback) does not cross a process boundary reliably; the pool logs the
traceback where it happened.
"""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from anvil.checkpoint_folders import size_bytes
from anvil.errors import UserError, failure_of
from anvil.types import ForwardBackwardResult
from trainer.commands import (
    BarrierCommand,
    BarrierResult,
    CommandFailure,
    CreateModel,
    CreateModelFromState,
    CreateResult,
    ForwardBackward,
    LoadResult,
    LoadState,
    OptimStep,
    OptimStepResult,
    SaveResult,
    SaveSamplerWeights,
    SaveState,
    Unload,
    UnloadResult,
)
from trainer.worker import TrainerWorker

log = logging.getLogger(__name__)


class TrainerPool(Protocol):
    def forward_backward(self, commands: Sequence[ForwardBackward]) -> list[ForwardBackwardResult | CommandFailure]:
        """One round's batched work, any mix of models; one answer per command, in order."""
        ...

    def run(self, command: BarrierCommand) -> BarrierResult | CommandFailure:
        """One barrier command, run alone."""
        ...


class InProcessTrainerPool:
    """Runs commands on a `TrainerWorker` in the calling thread."""

    def __init__(self, worker: TrainerWorker):
        self.worker = worker

    def forward_backward(self, commands: Sequence[ForwardBackward]) -> list[ForwardBackwardResult | CommandFailure]:
        try:
            return list(self.worker.forward_backward([(c.model_id, c.work) for c in commands]))
        except Exception as exc:  # deliberate: the failure goes back as data
            # the worker runs the batch as one computation, so every command of it fails alike
            return [_as_failure(exc, f"forward_backward batch of {len(commands)} commands")] * len(commands)

    def run(self, command: BarrierCommand) -> BarrierResult | CommandFailure:
        try:
            return self._dispatch(command)
        except Exception as exc:  # deliberate: the failure goes back as data
            return _as_failure(exc, f"{type(command).__name__} of {command.model_id}")

    def _dispatch(self, command: BarrierCommand) -> BarrierResult:
        worker = self.worker
        match command:
            case CreateModel():
                worker.create_model(command.model_id, command.base_model, command.spec)
                return CreateResult(command.model_id)
            case CreateModelFromState():
                worker.create_model_from_state(command.model_id, Path(command.folder), command.with_optimizer)
                return CreateResult(command.model_id)
            case OptimStep():
                return OptimStepResult(worker.optim_step(command.model_id, command.step))
            case SaveState():
                return _saved(worker.save_state(command.model_id, Path(command.folder)))
            case SaveSamplerWeights():
                return _saved(worker.save_sampler_weights(command.model_id, Path(command.folder)))
            case LoadState():
                worker.load_state(command.model_id, Path(command.folder), command.with_optimizer)
                return LoadResult(command.model_id)
            case Unload():
                worker.remove_model(command.model_id)
                return UnloadResult(command.model_id)
        raise TypeError(f"not a trainer command: {command!r}")


def _as_failure(exc: Exception, what: str) -> CommandFailure:
    if not isinstance(exc, UserError):  # a user's mistake needs no traceback in the server's log
        log.error("%s failed", what, exc_info=exc)
    return CommandFailure(*failure_of(exc))


def _saved(version: Path) -> SaveResult:
    return SaveResult(str(version), size_bytes(version))
