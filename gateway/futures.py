"""Futures: every submission gets a request id at once; `retrieve_future` long-polls for the result.

Results are resolved from worker threads (the press, the sampler) and awaited on the event loop.
Each future belongs to the user who submitted it: another user asking for it gets the answer an
unknown id gets. Futures are also written to the store (by a writer thread of their own, in
batches, so neither the loop nor the press waits for a commit): a finished one is answered after a
restart, and one the previous server never finished fails as a `server` error saying so. A result
is handed out only once its row is committed, so an answer a client has seen survives a kill -9.
"""

import asyncio
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from gateway.store import FutureResults, FutureRow, now_iso

log = logging.getLogger(__name__)

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# finished results are kept this long, in memory and in the store, so a client can fetch them
# again (or late, or after a restart)
RESULT_RETENTION_S = 3600.0
SWEEP_EVERY_S = 60.0
RESTARTED = "the server restarted before this request finished; send it again"


@dataclass(frozen=True)
class Payload:
    content_type: str
    body: bytes

    @staticmethod
    def json(value: dict) -> "Payload":
        return Payload(JSON, json.dumps(value).encode())

    @staticmethod
    def proto(message) -> "Payload":
        return Payload(PROTOBUF, message.SerializeToString())

    @staticmethod
    def error(message: str, category: str) -> "Payload":
        return Payload.json({"error": message, "category": category})


@dataclass
class _Entry:
    request_type: str
    owner: str
    created: str
    done: asyncio.Event = field(default_factory=asyncio.Event)
    payload: Payload | None = None
    finished_at: float = 0.0


class FutureStore:
    def __init__(self, loop: asyncio.AbstractEventLoop, results: FutureResults):
        self._loop = loop
        self._results = results
        self._entries: dict[str, _Entry] = {}
        self._last_sweep = time.monotonic()
        restarted = Payload.error(RESTARTED, "server")
        failed = results.fail_pending(now_iso(), restarted.content_type, restarted.body)
        if failed:
            log.warning("%d requests were still running when the server stopped; they fail as %r", failed, RESTARTED)
        self._writer = _ResultWriter(results)
        self._writer.sweep(_cutoff())

    def create(self, request_type: str, owner: str) -> str:
        """Must be called on the event loop."""
        self._sweep()
        request_id = f"req-{uuid.uuid4().hex}"
        entry = _Entry(request_type, owner, now_iso())
        self._entries[request_id] = entry
        self._writer.created(FutureRow(request_id, owner, request_type, entry.created))
        return request_id

    def resolve(self, request_id: str, payload: Payload) -> None:
        """Thread-safe: may be called from any thread."""
        self._loop.call_soon_threadsafe(self._set, request_id, payload)

    def fail(self, request_id: str, message: str, category: str = "user") -> None:
        self.resolve(request_id, Payload.error(message, category))

    async def wait(self, request_id: str, owner: str, timeout_s: float) -> Payload | None:
        """The result, or None if it is not ready within `timeout_s`. KeyError if the id is
        unknown, or is another user's."""
        entry = self._entries.get(request_id)
        if entry is None:
            return await self._stored(request_id, owner)
        if entry.owner != owner:
            raise KeyError(request_id)
        try:
            await asyncio.wait_for(entry.done.wait(), timeout_s)
        except TimeoutError:
            return None
        return entry.payload

    def close(self) -> None:
        """Write what is queued; futures still pending stay pending in the store (the next start
        fails them)."""
        self._writer.close()

    async def _stored(self, request_id: str, owner: str) -> Payload:
        """A future of an earlier run of the server: finished by now (the start failed the rest)."""
        row = await asyncio.to_thread(self._results.get, request_id)
        if row is None or row.owner != owner or row.finished_at is None:
            raise KeyError(request_id)
        return Payload(row.content_type, row.body)

    def _set(self, request_id: str, payload: Payload) -> None:
        entry = self._entries.get(request_id)
        if entry is None or entry.payload is not None:
            return
        entry.payload = payload
        entry.finished_at = time.monotonic()
        row = FutureRow(request_id, entry.owner, entry.request_type, entry.created, now_iso(), payload.content_type, payload.body)
        # answered once committed (a batch's commit: milliseconds)
        self._writer.finished(row, on_written=lambda: self._loop.call_soon_threadsafe(entry.done.set))

    def _sweep(self) -> None:
        now = time.monotonic()
        if now - self._last_sweep < SWEEP_EVERY_S:
            return
        self._last_sweep = now
        cutoff = now - RESULT_RETENTION_S
        stale = [rid for rid, e in self._entries.items() if e.payload is not None and e.finished_at < cutoff]
        for rid in stale:
            del self._entries[rid]
        self._writer.sweep(_cutoff())


def _cutoff() -> str:
    return (datetime.now(UTC) - timedelta(seconds=RESULT_RETENTION_S)).isoformat(timespec="microseconds")


class _ResultWriter:
    """One thread writing futures in the order they were queued; whatever queued up while it
    wrote goes in the next transaction, so a busy server pays one commit per batch."""

    _STOP = object()

    def __init__(self, results: FutureResults):
        self._results = results
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="anvil-future-writer", daemon=True)
        self._thread.start()

    def created(self, row: FutureRow) -> None:
        self._queue.put(("created", row))

    def finished(self, row: FutureRow, on_written: Callable[[], None]) -> None:
        """`on_written` runs on the writer's thread once the row is committed (or its write failed)."""
        self._queue.put(("finished", (row, on_written)))

    def sweep(self, cutoff: str) -> None:
        self._queue.put(("sweep", cutoff))

    def close(self) -> None:
        self._queue.put(self._STOP)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        stopping = False
        while not stopping:
            batch = [self._queue.get()]
            while not self._queue.empty():
                batch.append(self._queue.get())
            stopping = self._STOP in batch
            self._write([item for item in batch if item is not self._STOP])

    def _write(self, batch: list[tuple[str, object]]) -> None:
        created = [row for kind, row in batch if kind == "created"]
        finished = [item for kind, item in batch if kind == "finished"]
        try:
            # rows created in this batch are inserted before any of their results are written
            self._results.write(created, [row for row, _ in finished])
            for cutoff in (value for kind, value in batch if kind == "sweep"):
                self._results.delete_finished_before(cutoff)
        except Exception:  # deliberate: a failed write loses durability of these futures, not the server
            log.exception("writing %d futures to the store failed", len(batch))
        for _, on_written in finished:
            on_written()
