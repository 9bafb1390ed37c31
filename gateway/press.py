"""The press: gathers queued training work every tick and runs it in as few batches as possible.

Each training model has a queue ordered by `seq_id`. A tick starts as soon as the trainer is free
and work is ready; work arriving meanwhile waits for the next tick, so batches grow under load and
an idle server answers at once. Within a tick, every model's leading forward/forward_backward work
(up to its next barrier) goes into ONE trainer call, mixing adapters; then each model's barriers
(optim_step, save, load) run in seq order; rounds repeat until nothing is ready, so a pipelined
forward_backward + optim_step pair finishes in one tick.

The press hands the trainer pool commands (plain data) and gets results back as data; each
operation's `finish` then does the gateway's bookkeeping (metadata rows, pruning old folders) and
makes the future's payload, on the press thread, never inside the trainer.
"""

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anvil.errors import UserError, failure_of
from gateway.futures import FutureStore, Payload
from gateway.press_metrics import PressMetrics
from gateway.quotas import TRAIN_PIECE_TOKENS
from gateway.tick_stats import TickStats, TickTally
from gateway.train_pieces import merge_results, split_work
from gateway.training_curves import CurveRecorder
from trainer.commands import Command, CommandFailure, ForwardBackward, Unload
from trainer.pool import TrainerPool

log = logging.getLogger(__name__)

# a seq_id that never arrives (the client failed before sending it) holds its model's queue this
# long before the press moves past it
SEQ_GAP_TIMEOUT_S = 10.0
# request ids of a model's most recent seq_ids are remembered, so a re-sent request gets its first
# future; a re-send older than this is refused as already executed
REMEMBERED_SEQ_IDS = 4096


def _empty_payload(result: Any) -> Payload:
    return Payload.json({})


@dataclass
class TrainOp:
    """One training request in its model's queue.

    Exactly one of `command` (for the trainer) and `failure` (a request that failed validation: it
    keeps its seq_id slot, so later requests are not held up by a gap, and fails in its turn).
    """

    model_id: str
    seq_id: int
    request_id: str
    command: Command | None = None
    # the trainer's result → the future's payload, after any bookkeeping the result calls for
    finish: Callable[[Any], Payload] = _empty_payload
    failure: CommandFailure | None = None
    submitted_at: float = field(default=0.0, init=False)  # stamped by the press
    # a large forward_backward's pieces (gateway/train_pieces.py), one per round, and their results
    pieces: list[ForwardBackward] = field(default_factory=list, init=False)
    piece_results: list = field(default_factory=list, init=False)

    def __post_init__(self):
        if (self.command is None) == (self.failure is None):
            raise ValueError("a TrainOp has either a command or a failure")

    @property
    def batched(self) -> bool:
        return isinstance(self.command, ForwardBackward)


@dataclass
class _ModelQueue:
    next_seq: int
    owner: str = ""
    pending: dict[int, TrainOp] = field(default_factory=dict)
    blocked_since: float | None = None


class Press:
    def __init__(self, pool: TrainerPool, futures: FutureStore, clock: Callable[[], float] = time.monotonic,
                 piece_tokens: int = TRAIN_PIECE_TOKENS, curves: CurveRecorder | None = None):
        self.pool = pool
        self.curves = curves
        self.piece_tokens = piece_tokens
        self.futures = futures
        self.metrics = PressMetrics()
        self._clock = clock
        self._queues: dict[str, _ModelQueue] = {}
        self._seen: dict[tuple[str, int], str] = {}
        # (model_id, request id or None) to drop from the trainer before the next tick's work
        self._unloads: list[tuple[str, str | None]] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="anvil-press", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    def open_model(self, model_id: str, create: TrainOp, owner: str = "") -> str:
        """Register a model whose creation is `create` (seq 0); idempotent."""
        with self._cond:
            if model_id not in self._queues:
                self._queues[model_id] = _ModelQueue(next_seq=0, owner=owner)
        return self.submit(create)

    def models_of(self, owner: str) -> int:
        """Loaded models opened for `owner`."""
        with self._cond:
            return sum(1 for q in self._queues.values() if q.owner == owner)

    def unload(self, model_id: str, request_id: str | None = None) -> None:
        """Drop the model: its queued work fails as a user error, the trainer frees its adapter and
        optimizer state (on the press thread, before the next tick), and `request_id`'s future, if
        given, resolves when that is done. Unknown models are ignored."""
        with self._cond:
            queue = self._queues.pop(model_id, None)
            if queue is None and request_id is None:
                return
            for op in (queue.pending.values() if queue else ()):
                self.futures.fail(op.request_id, f"{model_id} was unloaded before this request ran", "user")
            self._seen = {key: rid for key, rid in self._seen.items() if key[0] != model_id}
            self._unloads.append((model_id, request_id))
            self._cond.notify_all()

    def loaded_models(self) -> int:
        with self._cond:
            return len(self._queues)

    def has_model(self, model_id: str) -> bool:
        with self._cond:
            return model_id in self._queues

    def request_id(self, model_id: str, seq_id: int) -> str | None:
        """The request id already given to (model_id, seq_id), if it was submitted before."""
        with self._cond:
            return self._seen.get((model_id, seq_id))

    def queued_ops(self) -> int:
        """Operations submitted and not yet taken by a tick."""
        with self._cond:
            return sum(len(q.pending) for q in self._queues.values())

    def submit(self, op: TrainOp) -> str:
        """Queue `op`; a re-sent (model_id, seq_id) returns the first request id, runs once."""
        key = (op.model_id, op.seq_id)
        with self._cond:
            if key in self._seen:
                return self._seen[key]
            queue = self._queues[op.model_id]
            if op.seq_id < queue.next_seq:
                raise UserError(f"seq_id {op.seq_id} of {op.model_id} was already executed or skipped")
            op.submitted_at = self._clock()
            if isinstance(op.command, ForwardBackward):
                if sum(len(d.tokens) for d in op.command.work.data) > self.piece_tokens:
                    op.pieces = [ForwardBackward(op.model_id, w) for w in split_work(op.command.work, self.piece_tokens)]
            self._seen[key] = op.request_id
            self._seen.pop((op.model_id, op.seq_id - REMEMBERED_SEQ_IDS), None)
            queue.pending[op.seq_id] = op
            self._cond.notify_all()
        return op.request_id

    def run_tick(self) -> TickStats:
        """Run everything ready now (rounds of one batch across models, then barriers in seq
        order, until nothing is ready) and return what the tick did."""
        tally = TickTally()
        self._run_unloads(tally)
        while True:
            batch = self._take(lambda op: op.batched, tally)
            if batch:
                self._run_batch(batch, tally)
            barriers = self._take(lambda op: not op.batched, tally)
            for op, _ in barriers:
                self._run_barrier(op, tally)
            if not batch and not barriers:
                break
            tally.rounds += 1
        stats = tally.stats()
        if stats.ops:
            self.metrics.record(stats)
        return stats

    def _run_unloads(self, tally: TickTally) -> None:
        with self._cond:
            unloads, self._unloads = self._unloads, []
        for model_id, request_id in unloads:
            result = self.pool.run(Unload(model_id))
            if self.curves is not None:
                self.curves.forget(model_id)
            tally.add_barrier(0.0)
            if request_id is None:
                continue
            if isinstance(result, CommandFailure):
                self.futures.fail(request_id, result.message, result.category)
            else:
                self.futures.resolve(request_id, Payload.json({"model_id": model_id, "type": "unload_model"}))

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopping and not self._unloads and not self._any_ready():
                    self._cond.wait(timeout=1.0)
                if self._stopping:
                    return
            self.run_tick()

    def _take(self, wanted: Callable[[TrainOp], bool], tally: TickTally) -> list[tuple[TrainOp, Command]]:
        """Pop each model's leading run of ready ops of one kind, in seq order, with the command
        to run for each: a pieced op gives its next piece, and stays at its queue's head (holding
        back the model's later ops) until its last piece is taken."""
        taken = []
        with self._cond:
            now = self._clock()
            self._skip_gaps(now)
            for queue in self._queues.values():
                while (op := queue.pending.get(queue.next_seq)) is not None and wanted(op):
                    if op.pieces:
                        index = len(op.piece_results)
                        if index == 0:
                            tally.queue_wait_s.append(max(0.0, now - op.submitted_at))
                        taken.append((op, op.pieces[index]))
                        if index < len(op.pieces) - 1:
                            break
                        del queue.pending[queue.next_seq]
                        queue.next_seq += 1
                        continue
                    del queue.pending[queue.next_seq]
                    queue.next_seq += 1
                    taken.append((op, op.command))
                    tally.queue_wait_s.append(max(0.0, now - op.submitted_at))
        return taken

    def _any_ready(self) -> bool:
        self._skip_gaps(self._clock())
        return any(q.next_seq in q.pending for q in self._queues.values())

    def _skip_gaps(self, now: float) -> None:
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

    def _run_batch(self, items: list[tuple[TrainOp, Command]], tally: TickTally) -> None:
        commands = [command for _, command in items]
        started = self._clock()
        try:
            results = self.pool.forward_backward(commands)
        except Exception as exc:  # deliberate: a pool that breaks fails this batch, not the press
            log.exception("forward_backward batch of %d requests failed", len(items))
            results = [CommandFailure(*failure_of(exc))] * len(items)
        tally.add_batch(commands, self._clock() - started)
        for (op, _), result in zip(items, results, strict=True):
            if not op.pieces:
                self._settle(op, result, tally)
            elif isinstance(result, CommandFailure):
                self._drop_pieced(op)
                done = len(op.piece_results)
                note = f" (after {done} of its {len(op.pieces)} pieces had added their gradients)" if done else ""
                self._settle(op, CommandFailure(result.category, result.message + note), tally)
            else:
                op.piece_results.append(result)
                if len(op.piece_results) == len(op.pieces):
                    merged = merge_results([p.work for p in op.pieces], op.piece_results)
                    self._settle(op, merged, tally)

    def _drop_pieced(self, op: TrainOp) -> None:
        """A pieced op that failed before its last piece: off its queue's head, so the model's
        later work goes on."""
        with self._cond:
            queue = self._queues.get(op.model_id)
            if queue is not None and queue.pending.get(queue.next_seq) is op:
                del queue.pending[queue.next_seq]
                queue.next_seq += 1

    def _run_barrier(self, op: TrainOp, tally: TickTally) -> None:
        if op.failure is not None:
            self._settle(op, op.failure, tally)
            return
        started = self._clock()
        try:
            result = self.pool.run(op.command)
        except Exception as exc:  # deliberate: report on the future, keep serving
            log.exception("%s seq %d failed", op.model_id, op.seq_id)
            result = CommandFailure(*failure_of(exc))
        tally.add_barrier(self._clock() - started)
        self._settle(op, result, tally)

    def _settle(self, op: TrainOp, result: Any, tally: TickTally) -> None:
        """Resolve or fail the op's future with what came back."""
        if isinstance(result, CommandFailure):
            tally.failed += 1
            self.futures.fail(op.request_id, result.message, result.category)
            return
        try:
            payload = op.finish(result)
        except Exception as exc:  # deliberate: a failed bookkeeping step fails this future only
            tally.failed += 1
            if not isinstance(exc, UserError):
                log.exception("finishing %s seq %d failed", op.model_id, op.seq_id)
            category, message = failure_of(exc)
            self.futures.fail(op.request_id, message, category)
            return
        if self.curves is not None:
            try:
                self.curves.record(op.model_id, op.command, result)
            except Exception:  # deliberate: a curve that cannot be recorded loses its point, not the result
                log.exception("recording the curve of %s seq %d failed", op.model_id, op.seq_id)
        self.futures.resolve(op.request_id, payload)
