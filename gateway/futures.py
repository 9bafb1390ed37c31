"""Futures: every submission gets a request id at once; `retrieve_future` long-polls for the result.

Results are resolved from worker threads (the press, the sampler) and awaited on the event loop.
"""

import asyncio
import json
import time
import uuid
from dataclasses import dataclass, field

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# finished results are kept this long, so a client can fetch them again (or late)
RESULT_RETENTION_S = 3600.0


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
    done: asyncio.Event = field(default_factory=asyncio.Event)
    payload: Payload | None = None
    finished_at: float = 0.0


class FutureStore:
    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._entries: dict[str, _Entry] = {}
        self._last_expiry = time.monotonic()

    def create(self, request_type: str) -> str:
        """Must be called on the event loop."""
        self._expire()
        request_id = f"req-{uuid.uuid4().hex}"
        self._entries[request_id] = _Entry(request_type)
        return request_id

    def resolve(self, request_id: str, payload: Payload) -> None:
        """Thread-safe: may be called from any thread."""
        self._loop.call_soon_threadsafe(self._set, request_id, payload)

    def fail(self, request_id: str, message: str, category: str = "user") -> None:
        self.resolve(request_id, Payload.error(message, category))

    def exists(self, request_id: str) -> bool:
        return request_id in self._entries

    async def wait(self, request_id: str, timeout_s: float) -> Payload | None:
        """The result, or None if it is not ready within `timeout_s`. KeyError if unknown."""
        entry = self._entries[request_id]
        try:
            await asyncio.wait_for(entry.done.wait(), timeout_s)
        except TimeoutError:
            return None
        return entry.payload

    def _set(self, request_id: str, payload: Payload) -> None:
        entry = self._entries.get(request_id)
        if entry is None or entry.payload is not None:
            return
        entry.payload = payload
        entry.finished_at = time.monotonic()
        entry.done.set()

    def _expire(self) -> None:
        now = time.monotonic()
        if now - self._last_expiry < 60.0:
            return
        self._last_expiry = now
        cutoff = now - RESULT_RETENTION_S
        stale = [rid for rid, e in self._entries.items() if e.payload is not None and e.finished_at < cutoff]
        for rid in stale:
            del self._entries[rid]
