"""The trainer pool on a Ray cluster: trainer workers as actors, each base model on its own.

A trainer worker (trainer/ray_worker.py) is one actor, or several when its placement group shards
the base model (`shards`, FSDP2); each wraps a `TrainerWorker` behind `InProcessTrainerPool`, so
commands and results cross the process boundary as the plain data of trainer/commands.py. A
model lives on one worker, chosen when it is created (its base model's group in the placement, the
worker holding fewest models); a forward_backward batch that mixes workers is split by worker, run
concurrently and answered in the original order.

Faults. Ray restarts a dead actor (anvil/ray_cluster.py: max_restarts), empty (all ranks of a
sharded worker together). The pool then restores each model the worker held from what it last recorded for that model: the training
checkpoint of its last save_state, load_state or creation from a checkpoint.
- Exact restore (nothing changed since that checkpoint, no gradients pending): the command that
  met the death is retried, and nobody notices more than the delay.
- Inexact restore: the command fails with a `server` error saying the steps since the checkpoint
  were lost; so does the model's next command (a pipelined optim_step would otherwise step the
  restored weights without their gradients). After that the model trains on from the checkpoint.
- Nothing to restore from: the model is reported lost; its commands fail, telling the client to
  create it again from a checkpoint.
Commands that need no prior state (create, create from a checkpoint, unload) are always retried.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ray.exceptions import RayActorError

from anvil.base_models import BaseModelRegistry
from anvil.placement import Placement
from anvil.types import ForwardBackwardResult
from trainer import checkpoints
from trainer.commands import (
    BarrierCommand,
    BarrierResult,
    CommandFailure,
    CreateModel,
    CreateModelFromState,
    ForwardBackward,
    LoadState,
    OptimStep,
    SaveResult,
    SaveState,
    Unload,
    UnloadResult,
)
from trainer.pool import _as_failure
from trainer.ray_worker import RayTrainerWorker, WorkerDied, first_line

log = logging.getLogger(__name__)

@dataclass
class _Placed:
    """What the pool knows of one model: where it runs and how to rebuild it."""

    actor: int
    base_model: str
    restore_from: tuple[str, bool] | None = None  # (training checkpoint folder, with optimizer)
    changed: bool = True  # its state differs from restore_from's
    grads: bool = False  # a forward_backward's gradients wait for an optim_step

    @property
    def exact(self) -> bool:
        return self.restore_from is not None and not self.changed and not self.grads


class RayTrainerPool:
    def __init__(self, registry: BaseModelRegistry, placement: Placement, gpus: float = 0.0,
                 precision: str | None = None):
        self.registry = registry
        self.placement = placement
        self.gpus = gpus
        self.precision = precision
        self._workers: list[RayTrainerWorker] = []
        self._groups: dict[str | None, list[int]] = {}
        self._models: dict[str, _Placed] = {}
        # models the pool could not rebuild, and why
        self._lost: dict[str, str] = {}
        # models rebuilt from an older state: their next command fails with this, once
        self._notices: dict[str, str] = {}

    # the TrainerPool contract

    def forward_backward(self, commands: Sequence[ForwardBackward]) -> list[ForwardBackwardResult | CommandFailure]:
        results: list = [None] * len(commands)
        by_actor: dict[int, list[int]] = {}
        for i, command in enumerate(commands):
            refusal = self._refusal(command.model_id)
            if refusal is not None:
                results[i] = refusal
            else:
                by_actor.setdefault(self._models[command.model_id].actor, []).append(i)
        # every actor's share is sent before any answer is awaited: they run concurrently
        pending = {a: self._workers[a].submit("forward_backward", [commands[i] for i in idx]) for a, idx in by_actor.items()}
        for a, idx in by_actor.items():
            share = [commands[i] for i in idx]
            try:
                answers = self._workers[a].answer(pending[a])
            except WorkerDied as exc:
                answers = self._after_death(a, str(exc), share)
            for i, command, answer in zip(idx, share, answers, strict=True):
                results[i] = answer
                if not isinstance(answer, CommandFailure) and not command.work.forward_only:
                    self._models[command.model_id].grads = True
        return results

    def run(self, command: BarrierCommand) -> BarrierResult | CommandFailure:
        if isinstance(command, Unload):
            return self._unload(command)
        if isinstance(command, CreateModel | CreateModelFromState):
            return self._create(command)
        refusal = self._refusal(command.model_id)
        if refusal is not None:
            return refusal
        placed = self._models[command.model_id]
        result = self._call(placed.actor, command)
        if not isinstance(result, CommandFailure):
            self._record(command, result)
        return result

    # where models run

    def actor_of(self, model_id: str) -> int | None:
        placed = self._models.get(model_id)
        return None if placed is None else placed.actor

    def actor_pids(self) -> dict[str, int]:
        """Each actor's name and process id (for operators and fault tests): one per trainer
        worker, one per rank of a sharded one."""
        return {name: pid for worker in self._workers for name, pid in worker.pids().items()}

    def close(self) -> None:
        for worker in self._workers:
            worker.kill()
        self._workers.clear()

    def _actor_for(self, base_model: str) -> int:
        group = self.placement.group_of(base_model)
        if group not in self._groups:  # a group's actors start on its first model
            indexes = []
            settings = self.placement.of(group)
            for n in range(settings.trainers):
                indexes.append(len(self._workers))
                self._workers.append(RayTrainerWorker(
                    f"trainer:{group or 'default'}#{n}", self.registry, self.precision, self.gpus, settings.shards
                ))
            self._groups[group] = indexes
        load = {a: 0 for a in self._groups[group]}
        for placed in self._models.values():
            if placed.actor in load:
                load[placed.actor] += 1
        return min(load, key=lambda a: (load[a], a))

    def _create(self, command: CreateModel | CreateModelFromState) -> BarrierResult | CommandFailure:
        self._lost.pop(command.model_id, None)
        self._notices.pop(command.model_id, None)
        if isinstance(command, CreateModel):
            base_model, restore_from = command.base_model, None
        else:
            try:  # the checkpoint's own files say which base model it needs
                base_model, _ = checkpoints.read_training_meta(Path(command.folder))
            except Exception as exc:  # deliberate: the failure goes back as data
                return _as_failure(exc, f"CreateModelFromState of {command.model_id}")
            # with or without its optimizer state, the checkpoint rebuilds the model as created
            restore_from = (command.folder, command.with_optimizer)
        actor = self._actor_for(base_model)
        result = self._call(actor, command)
        if not isinstance(result, CommandFailure):
            self._models[command.model_id] = _Placed(actor, base_model, restore_from, changed=restore_from is None)
        return result

    def _unload(self, command: Unload) -> BarrierResult | CommandFailure:
        self._lost.pop(command.model_id, None)
        self._notices.pop(command.model_id, None)
        placed = self._models.pop(command.model_id, None)
        if placed is None:
            return UnloadResult(command.model_id)
        return self._call(placed.actor, command)

    def _record(self, command: BarrierCommand, result: BarrierResult) -> None:
        """Keep what a restore needs after a command that changed the model."""
        placed = self._models[command.model_id]
        match command:
            case OptimStep():
                placed.changed, placed.grads = True, False
            case SaveState():
                assert isinstance(result, SaveResult)
                placed.restore_from, placed.changed = (result.folder, True), False
            case LoadState():
                # a load without the optimizer clears the AdamW state, as creating from it does
                placed.restore_from, placed.changed, placed.grads = (command.folder, command.with_optimizer), False, False

    def _refusal(self, model_id: str) -> CommandFailure | None:
        if model_id in self._lost:
            return CommandFailure("server", self._lost[model_id])
        if model_id in self._notices:
            return CommandFailure("server", self._notices.pop(model_id) + "; this request was not run: send it again")
        if model_id not in self._models:
            return CommandFailure("server", f"model {model_id} is not loaded on any trainer worker")
        return None

    # faults

    def _call(self, actor: int, command: BarrierCommand) -> BarrierResult | CommandFailure:
        try:
            return self._workers[actor].call("run", command)
        except WorkerDied as exc:
            return self._after_death(actor, str(exc), [command])[0]

    def _after_death(self, actor: int, cause: str, commands: list) -> list:
        """Answers for `commands`, which were running on `actor` when it died: rebuild its models
        on the restarted actor, then retry what is safe to retry."""
        what = f"trainer worker {self._workers[actor].name} died ({cause})"
        log.error("%s while running %d command(s); restoring its models", what, len(commands))
        exact = self._restore(actor, what)
        answers = []
        for command in commands:
            stateless = isinstance(command, CreateModel | CreateModelFromState | Unload)
            if stateless or command.model_id in exact:
                log.warning("retrying %s of %s after the restart", type(command).__name__, command.model_id)
                answers.append(self._retry(actor, command, what))
            else:
                reason = self._lost.get(command.model_id) or self._notices.get(command.model_id, what)
                answers.append(CommandFailure("server", f"{type(command).__name__} of {command.model_id} did not finish: {reason}"))
        return answers

    def _restore(self, actor: int, what: str) -> set[str]:
        """Rebuild the models `actor` held; returns those restored exactly."""
        exact = set()
        try:
            self._workers[actor].recover()
        except RayActorError as gone:
            for model_id in [m for m, p in self._models.items() if p.actor == actor]:
                self._lose(model_id, f"{what}; it did not come back ({first_line(gone)}), so model {model_id} "
                           "is lost: create it again from a checkpoint")
            return exact
        for model_id, placed in [(m, p) for m, p in self._models.items() if p.actor == actor]:
            if placed.restore_from is None:
                self._lose(model_id, f"{what}; model {model_id} was never saved with save_state, so it is lost: "
                           "create it again from a checkpoint")
                continue
            folder, with_optimizer = placed.restore_from
            try:
                result = self._workers[actor].call("run", CreateModelFromState(model_id, folder, with_optimizer))
            except WorkerDied as again:
                result = CommandFailure("server", f"the restarted worker died too ({again})")
            if isinstance(result, CommandFailure):
                self._lose(model_id, f"{what}; model {model_id} could not be restored from {folder} "
                           f"({result.message}): create it again from a checkpoint")
                continue
            if placed.exact:
                log.warning("model %s restored exactly from %s", model_id, folder)
                exact.add(model_id)
            else:
                self._notices[model_id] = (f"{what}; model {model_id} was restored from its last saved state {folder}: "
                                           "the steps since that save were lost")
                log.warning("%s", self._notices[model_id])
                placed.changed, placed.grads = False, False
        return exact

    def _lose(self, model_id: str, why: str) -> None:
        log.error("%s", why)
        self._models.pop(model_id, None)
        self._lost[model_id] = why

    def _retry(self, actor: int, command, what: str):
        try:
            if isinstance(command, ForwardBackward):
                return self._workers[actor].call("forward_backward", [command])[0]
            return self._workers[actor].call("run", command)
        except WorkerDied as again:
            return CommandFailure("server", f"{what}, and again on the retry ({again})")
