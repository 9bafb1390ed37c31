"""A sampling engine in a Ray actor, behind the same `SamplingEngine` contract as in-process.

The actor is an async actor holding one engine (torch or vLLM; a vLLM engine starts its own
worker process inside the actor, as it does in-process). `RaySamplingEngine` is the fleet's end
of it: each call is an actor call awaited on the scheduler's loop. `stream` is a Ray streaming
generator: one object per engine step, a few hundred microseconds each on one node. Errors the
engine raised come back as themselves (SampleRejected stays a user error); a dead actor is
EngineDead, so the fleet replaces it and retries the work once (sampling has no side effects).
"""

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import ray
from ray.exceptions import RayActorError, RayTaskError

from anvil.ray_cluster import actor_options
from anvil.types import AdapterRef, SampleDelta, SampleResult, SampleWork
from sampler.engine import EngineDead, EngineStats, RequestCounts, SamplingEngine

log = logging.getLogger(__name__)

# seconds an engine may take to start in its actor (a vLLM engine compiles for a while)
START_TIMEOUT_S = 900.0


class SamplerActor:
    """The process of one sampling engine (an async Ray actor)."""

    def __init__(self, kind: str, base_model: str, path: str, vllm_options: dict):
        self.kind, self.base_model, self.path, self.vllm_options = kind, base_model, Path(path), vllm_options
        self.engine: SamplingEngine | None = None

    async def start(self) -> int:
        if self.kind == "torch":
            from sampler.torch_engine import TorchSamplingEngine

            self.engine = await asyncio.to_thread(TorchSamplingEngine, self.base_model, self.path)
        else:
            from sampler.vllm_engine import VllmSamplingEngine

            self.engine = await VllmSamplingEngine.start(self.base_model, self.path, **self.vllm_options)
        return os.getpid()

    def cannot_serve(self, adapter: AdapterRef | None) -> str | None:
        return self._started().cannot_serve(adapter)

    async def sample(self, work: SampleWork, adapter: AdapterRef | None) -> tuple[SampleResult, int]:
        engine = self._started()
        result = await engine.sample(work, adapter)
        return result, engine.stats().adapters_resident

    async def stream(self, work: SampleWork, adapter: AdapterRef | None):
        async for delta in self._started().stream(work, adapter):
            yield delta

    def _started(self) -> SamplingEngine:
        # Ray restarts a dead actor without calling `start`: to the fleet it is a dead engine
        if self.engine is None:
            raise EngineDead(f"the sampler actor of {self.base_model} was restarted and holds no engine")
        return self.engine

    async def aclose(self) -> None:
        if self.engine is not None:
            await self.engine.aclose()


class RaySamplingEngine:
    def __init__(self, actor, kind: str, base_model: str, pid: int):
        self.actor = actor
        self.kind = kind
        self.base_model = base_model
        self.pid = pid
        self._counts = RequestCounts()
        self._resident = 0
        # cannot_serve is asked on every request and is sync; its answer depends on the adapter only
        self._cannot_serve: dict[str | None, str | None] = {}

    @classmethod
    async def start(cls, kind: str, base_model: str, path: Path, gpus: float, vllm_options: dict) -> "RaySamplingEngine":
        remote = ray.remote(SamplerActor).options(**actor_options(gpus))
        actor = remote.remote(kind, base_model, str(path), vllm_options)
        try:
            pid = await asyncio.wait_for(_await(actor.start.remote()), START_TIMEOUT_S)
        except BaseException:
            ray.kill(actor, no_restart=True)
            raise
        log.info("sampler engine %s:%s runs in Ray actor pid %d", kind, base_model, pid)
        return cls(actor, kind, base_model, pid)

    def cannot_serve(self, adapter: AdapterRef | None) -> str | None:
        key = None if adapter is None else adapter.key
        if key not in self._cannot_serve:
            try:
                self._cannot_serve[key] = ray.get(self.actor.cannot_serve.remote(adapter), timeout=60)
            except RayActorError:
                return None  # the request that follows meets the dead actor and is retried
        return self._cannot_serve[key]

    async def sample(self, work: SampleWork, adapter: AdapterRef | None) -> SampleResult:
        with self._counts.counting():
            result, self._resident = await _await(self.actor.sample.remote(work, adapter))
        return self._counts.done(result)

    async def stream(self, work: SampleWork, adapter: AdapterRef | None) -> AsyncIterator[SampleDelta]:
        deltas = self.actor.stream.options(num_returns="streaming").remote(work, adapter)
        finished = False
        tokens = 0
        with self._counts.counting():
            try:
                async for ref in deltas:
                    delta = await _await(ref)
                    tokens += len(delta.tokens)
                    yield delta
                finished = True
                self._counts.finished(tokens)
            except RayActorError as exc:
                raise EngineDead(f"the sampler actor of {self.base_model} died: {exc}") from None
            finally:
                if not finished:  # a consumer that left early ends the request on the engine
                    ray.cancel(deltas)

    def stats(self) -> EngineStats:
        return self._counts.stats(self.kind, self.base_model, adapters_resident=self._resident)

    async def aclose(self) -> None:
        try:
            await asyncio.wait_for(_await(self.actor.aclose.remote()), 30)
        except (TimeoutError, EngineDead):
            pass  # deliberate: a dead, restarting or stuck actor is killed below all the same
        ray.kill(self.actor, no_restart=True)


async def _await(ref):
    """An actor call's answer; the engine's own exception as itself, a dead actor as EngineDead."""
    try:
        return await ref
    except RayActorError as exc:
        raise EngineDead(f"the sampler actor died: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    except RayTaskError as exc:
        cause = exc.cause
        if isinstance(cause, BaseException):
            raise cause from None
        raise
