"""The sampling scheduler: the press's counterpart for sampling.

The gateway hands it sampling work; it runs the work on the fleet, on an event loop of its own in
its own thread (engines batch the requests in flight there), and resolves each request's future
on the gateway's loop. A re-sent request (same sampling session and seq_id) gets the first one's
future and runs once. The OpenAI routes, which answer in the same HTTP request rather than
through a future, await the result (`sample`) or its tokens as they come (`stream`) instead.
"""

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass

from anvil.errors import UserError, failure_of
from anvil.types import AdapterRef, SampleDelta, SampleResult, SampleWork
from gateway import proto_codec
from gateway.futures import FutureStore, Payload
from sampler.fleet import SamplerFleet

log = logging.getLogger(__name__)

REMEMBERED_REQUESTS = 100_000
_STREAM_END = object()


@dataclass(frozen=True)
class SampleJob:
    sampling_session_id: str
    seq_id: int
    base_model: str
    adapter: AdapterRef | None
    work: SampleWork


class SampleScheduler:
    def __init__(self, fleet: SamplerFleet, futures: FutureStore):
        self.fleet = fleet
        self.futures = futures
        # (sampling_session_id, seq_id) → request id, most recent last
        self._requests: OrderedDict[tuple[str, int], str] = OrderedDict()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="anvil-sampling", daemon=True)
        self.submitted = 0
        self.finished = 0
        self.failed = 0

    def start(self) -> None:
        self._thread.start()
        log.info("sampler engine: %s", self.fleet.describe())

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        closing = asyncio.run_coroutine_threadsafe(self.fleet.aclose(), self._loop)
        try:
            closing.result(timeout=30)
        except Exception:  # deliberate: shutting down; an engine that will not close is left behind
            log.exception("closing the sampler fleet")
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def known_request(self, sampling_session_id: str, seq_id: int) -> str | None:
        return self._requests.get((sampling_session_id, seq_id))

    def submit(self, job: SampleJob, owner: str) -> str:
        """Queue `job` for `owner`; returns its request id (the first one's, for a re-sent request)."""
        key = (job.sampling_session_id, job.seq_id)
        if key in self._requests:
            return self._requests[key]
        request_id = self.futures.create("Sample", owner)
        self._requests[key] = request_id
        if len(self._requests) > REMEMBERED_REQUESTS:
            self._requests.popitem(last=False)
        self.submitted += 1
        running = asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
        running.add_done_callback(lambda done: self._finish(request_id, done))
        return request_id

    async def sample(self, job: SampleJob) -> SampleResult:
        """Run `job` and await its result on the caller's loop; cancelling the caller cancels the
        request on the engine."""
        self.submitted += 1
        running = asyncio.run_coroutine_threadsafe(self._run(job), self._loop)
        try:
            result = await asyncio.wrap_future(running)
        except BaseException:
            self.failed += 1
            raise
        self.finished += 1
        return result

    async def stream(self, job: SampleJob) -> AsyncIterator[SampleDelta]:
        """Run `job`, yielding its deltas on the caller's loop as the engine produces them; leaving
        the iteration early ends the request on the engine."""
        caller = asyncio.get_running_loop()
        arrivals: asyncio.Queue = asyncio.Queue()

        async def pump() -> None:
            stream = self.fleet.stream(job.base_model, job.sampling_session_id, job.adapter, job.work)
            async for delta in stream:
                caller.call_soon_threadsafe(arrivals.put_nowait, delta)

        self.submitted += 1
        running = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        # runs on the sampling thread after the last delta was queued, so it arrives last
        running.add_done_callback(lambda _: caller.call_soon_threadsafe(arrivals.put_nowait, _STREAM_END))
        outcome_counted = False
        try:
            while (delta := await arrivals.get()) is not _STREAM_END:
                yield delta
            running.result()  # the stream's error, if it failed
            self.finished += 1
            outcome_counted = True
        finally:
            if not outcome_counted:
                self.failed += 1
            running.cancel()

    async def _run(self, job: SampleJob) -> SampleResult:
        return await self.fleet.sample(job.base_model, job.sampling_session_id, job.adapter, job.work)

    def _finish(self, request_id: str, done) -> None:
        # runs on the sampling thread (encoding stays off the gateway's loop); resolve is thread-safe
        exc = done.exception()
        if exc is None:
            self.finished += 1
            self.futures.resolve(request_id, Payload.proto(proto_codec.sample_response(done.result())))
            return
        self.failed += 1
        if not isinstance(exc, UserError):
            log.error("sample %s failed", request_id, exc_info=exc)
        category, message = failure_of(exc)
        self.futures.fail(request_id, message, category)

    @property
    def in_flight(self) -> int:
        return self.submitted - self.finished - self.failed
