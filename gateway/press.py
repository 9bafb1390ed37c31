"""The press: gathers queued training work every tick and runs it in as few batches as possible.

Each training model has a queue ordered by `seq_id`. A tick starts as soon as the trainer is free
and work is ready; work arriving meanwhile waits for the next tick, so batches grow under load and
an idle server answers at once. Within a tick, every model's leading forward/forward_backward work
(up to its next barrier) goes into ONE trainer call, mixing adapters; then each model's barriers
(optim_step, save, load) run in seq order; rounds repeat until nothing is ready, so a pipelined
forward_backward + optim_step pair finishes in one tick.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anvil.types import ForwardBackwardWork
from gateway.errors import UserError
from gateway.futures import FutureStore, Payload
from trainer.worker import TrainerWorker

log = logging.getLogger(__name__)

# a seq_id that never arrives (the client failed before sending it) holds its model's queue this
# long before the press moves past it
SEQ_GAP_TIMEOUT_S = 10.0
# request ids of a model's most recent seq_ids are remembered, so a re-sent request gets its first
# future; a re-send older than this is refused as already executed
REMEMBERED_SEQ_IDS = 4096


@dataclass
class TrainOp:
    model_id: str
    seq_id: int
    request_id: str
    # exactly one of the two: work batched with other models' work, or a barrier run alone
    work: ForwardBackwardWork | None = None
    barrier: Callable[[TrainerWorker], Any] | None = None
    # turns the trainer's result into the future's payload
    finish: Callable[[Any], Payload] = field(default=lambda result: Payload.json(result or {}))


@dataclass
class _ModelQueue:
    next_seq: int
    pending: dict[int, TrainOp] = field(default_factory=dict)
    blocked_since: float | None = None


class Press:
    def __init__(self, worker: TrainerWorker, futures: FutureStore):
        self.worker = worker
        self.futures = futures
        self._queues: dict[str, _ModelQueue] = {}
        self._seen: dict[tuple[str, int], str] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="anvil-press", daemon=True)
        self.ticks = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(timeout=30)

    def open_model(self, model_id: str, create: TrainOp) -> str:
        """Register a model whose creation is `create` (seq 0); idempotent."""
        with self._cond:
            if model_id not in self._queues:
                self._queues[model_id] = _ModelQueue(next_seq=0)
        return self.submit(create)

    def has_model(self, model_id: str) -> bool:
        with self._cond:
            return model_id in self._queues

    def request_id(self, model_id: str, seq_id: int) -> str | None:
        """The request id already given to (model_id, seq_id), if it was submitted before."""
        with self._cond:
            return self._seen.get((model_id, seq_id))

    def submit(self, op: TrainOp) -> str:
        """Queue `op`; a re-sent (model_id, seq_id) returns the first request id, runs once."""
        key = (op.model_id, op.seq_id)
        with self._cond:
            if key in self._seen:
                return self._seen[key]
            queue = self._queues[op.model_id]
            if op.seq_id < queue.next_seq:
                raise UserError(f"seq_id {op.seq_id} of {op.model_id} was already executed or skipped")
            self._seen[key] = op.request_id
            self._seen.pop((op.model_id, op.seq_id - REMEMBERED_SEQ_IDS), None)
            queue.pending[op.seq_id] = op
            self._cond.notify_all()
        return op.request_id

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._any_ready():
                    self._cond.wait(timeout=1.0)
                if self._stopping:
                    return
            self._tick()

    def _tick(self) -> None:
        self.ticks += 1
        while True:
            batch = self._take(lambda op: op.work is not None)
            if batch:
                self._run_batch(batch)
            barriers = self._take(lambda op: op.barrier is not None)
            for op in barriers:
                self._run_barrier(op)
            if not batch and not barriers:
                return

    def _take(self, wanted: Callable[[TrainOp], bool]) -> list[TrainOp]:
        """Pop each model's leading run of ready ops of one kind, in seq order."""
        taken = []
        with self._cond:
            self._skip_gaps()
            for queue in self._queues.values():
                while (op := queue.pending.get(queue.next_seq)) is not None and wanted(op):
                    del queue.pending[queue.next_seq]
                    queue.next_seq += 1
                    taken.append(op)
        return taken

    def _any_ready(self) -> bool:
        self._skip_gaps()
        return any(q.next_seq in q.pending for q in self._queues.values())

    def _skip_gaps(self) -> None:
        now = time.monotonic()
        for model_id, queue in self._queues.items():
            if not queue.pending or queue.next_seq in queue.pending:
                queue.blocked_since = None
                continue
            if queue.blocked_since is None:
                queue.blocked_since = now
            elif now - queue.blocked_since > SEQ_GAP_TIMEOUT_S:
                missing = queue.next_seq
                queue.next_seq = min(queue.pending)
                queue.blocked_since = None
                log.warning("%s: seq_id %d..%d never arrived; moving on", model_id, missing, queue.next_seq - 1)

    def _run_batch(self, ops: list[TrainOp]) -> None:
        try:
            results = self.worker.forward_backward([(op.model_id, op.work) for op in ops])
        except Exception as exc:  # deliberate: one failed batch must not stop the press
            log.exception("forward_backward batch of %d requests failed", len(ops))
            for op in ops:
                self._fail(op, exc)
            return
        for op, result in zip(ops, results, strict=True):
            self._finish(op, result)

    def _run_barrier(self, op: TrainOp) -> None:
        try:
            result = op.barrier(self.worker)
        except Exception as exc:  # deliberate: report on the future, keep serving
            if not isinstance(exc, UserError):
                log.exception("%s seq %d failed", op.model_id, op.seq_id)
            self._fail(op, exc)
            return
        self._finish(op, result)

    def _finish(self, op: TrainOp, result: Any) -> None:
        try:
            payload = op.finish(result)
        except Exception as exc:  # deliberate: an encoding failure fails this future only
            log.exception("encoding the result of %s seq %d failed", op.model_id, op.seq_id)
            self._fail(op, exc)
            return
        self.futures.resolve(op.request_id, payload)

    def _fail(self, op: TrainOp, exc: Exception) -> None:
        if isinstance(exc, UserError):
            self.futures.fail(op.request_id, exc.message, "user")
        else:
            self.futures.fail(op.request_id, f"{type(exc).__name__}: {exc}", "server")
