"""The curves of training runs, recorded as the press settles their results.

Step numbering: one optim_step is one step; the forward_backward results before it belong to the
step it ends, so step 1 holds the first forward_backwards and the first optim_step. A step with
several forward_backwards (gradient accumulation) combines their values the way their names say:
`…:sum` adds up, `…:max` and `…:min` keep the extreme, anything else is averaged.
forward (forward_backward with forward_only) is evaluation, not training: it is not recorded.

Bounds, so a long or hostile run cannot fill the database: the first MAX_STEPS steps of a run are
kept (its step count goes on), at most MAX_NAMES metrics per step (the first reported, by name
order within a result), names of at most MAX_NAME_CHARS characters.

The press thread only does arithmetic here; one writer thread of its own writes to the store, in
batches, so neither the press nor the event loop waits for a commit.
"""

import logging
import math
import queue
import threading
from dataclasses import dataclass, field

from gateway.store import RunCurves, StepPoints
from trainer.commands import Command, CreateModel, CreateModelFromState, ForwardBackward, OptimStep

log = logging.getLogger(__name__)

MAX_STEPS = 10_000
MAX_NAMES = 16
MAX_NAME_CHARS = 128


@dataclass
class _OpenStep:
    """A run's step in progress: its number and what its results reported so far."""

    step: int = 1
    # name → (combined value, how many results reported it)
    values: dict[str, tuple[float, int]] = field(default_factory=dict)


class CurveRecorder:
    def __init__(self, curves: RunCurves):
        self._curves = curves
        self._open: dict[str, _OpenStep] = {}
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="anvil-curve-writer", daemon=True)
        self._thread.start()

    def record(self, model_id: str, command: Command, result) -> None:
        """A successful result of `command` on the press thread (results of one model arrive in
        seq order there)."""
        if isinstance(command, ForwardBackward) and not command.work.forward_only:
            self._add(model_id, result.metrics, ends_step=False)
        elif isinstance(command, OptimStep):
            self._add(model_id, result.metrics, ends_step=True)
        elif isinstance(command, (CreateModel, CreateModelFromState)):
            # a model created again under an id used before (the same session and model_seq_id,
            # after an unload) is a new run: the run's row was replaced, and so is its curve
            self._open[model_id] = _OpenStep()
            self._queue.put(("clear", model_id))

    def forget(self, model_id: str) -> None:
        """The model was unloaded: its step in progress is not continued."""
        self._open.pop(model_id, None)

    def close(self) -> None:
        """Write what is queued."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _add(self, model_id: str, metrics: dict[str, float], ends_step: bool) -> None:
        current = self._open.setdefault(model_id, _OpenStep())
        touched = {}
        for name in sorted(metrics):
            if len(name) > MAX_NAME_CHARS or (name not in current.values and len(current.values) >= MAX_NAMES):
                continue
            value = _finite(metrics[name])
            combined = _combine(name, current.values.get(name), value)
            current.values[name] = combined
            touched[name] = combined[0]
        points = [StepPoints(model_id, current.step, touched)] if touched and current.step <= MAX_STEPS else []
        steps = {}
        if ends_step:
            steps[model_id] = current.step
            self._open[model_id] = _OpenStep(step=current.step + 1)
        if points or steps:
            self._queue.put(("add", (points, steps)))

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            points: list[StepPoints] = []
            steps: dict[str, int] = {}
            cleared: set[str] = set()
            for item in batch:
                if item is None:
                    continue
                kind, value = item
                if kind == "clear":
                    # what the batch held of the old run goes with it; the store's rows go first
                    points = [p for p in points if p.model_id != value]
                    steps.pop(value, None)
                    cleared.add(value)
                else:
                    points.extend(value[0])
                    steps.update(value[1])
            try:
                self._curves.write(points, steps, cleared=sorted(cleared))
            except Exception:  # deliberate: a failed write loses these points, not the server
                log.exception("writing %d curve points to the store failed", len(points))
            if None in batch:
                return


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _combine(name: str, before: tuple[float | None, int] | None, value: float | None) -> tuple[float | None, int]:
    if before is None:
        return value, 1
    old, count = before
    if old is None or value is None:
        return None, count + 1  # a NaN anywhere in the step makes the step's value unknown
    if name.endswith(":sum"):
        return old + value, count + 1
    if name.endswith(":max"):
        return max(old, value), count + 1
    if name.endswith(":min"):
        return min(old, value), count + 1
    return old + (value - old) / (count + 1), count + 1
