"""In-process reference sampling engine on plain torch + transformers, with LoRA adapters.

It runs the same multi-LoRA layers as the trainer, on the device and base precision the trainer
uses (anvil/device.py), so its logprobs match the trainer's; it is the engine where vLLM is
absent, the one for adapters vLLM cannot serve, and the reference the vLLM engine is tested
against. Requests decode on the engine's own thread, a few steps of each in turn
(sampler/round_robin.py), behind the async contract.
"""

import asyncio
import dataclasses
import math
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from anvil.device import pick_device
from anvil.multi_lora import LoraWeights, Segment, inject_multi_lora, routed
from anvil.peft_format import read_peft_adapter
from anvil.types import AdapterRef, SampleDelta, SampledSequence, SampleResult, SampleWork, TopLogprobs
from sampler.engine import EngineStats, RequestCounts
from sampler.round_robin import RoundRobin, Steps

# adapters kept loaded at once; the least recently used is dropped and reloaded on demand
MAX_LOADED_ADAPTERS = 64
# logprob reported for padding cells of top-k rows (the SDK's mask value)
TOPK_PAD_LOGPROB = -99999.0

# receives, after each decoding step, what every sequence still running gained in it
OnStep = Callable[[list[SampleDelta]], None]


class TorchSamplingEngine:
    kind = "torch"

    def __init__(self, base_model: str, path: Path):
        self.base_model = base_model
        self.device, dtype = pick_device()
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        model.requires_grad_(False)
        self.model = model.eval().to(self.device)
        self.routing, self.layers = inject_multi_lora(self.model)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.eos_token_ids = eos_token_ids(path, self.tokenizer, self.model.config)
        # loaded adapters by AdapterRef.key (checkpoint and version), least recently used first
        self._adapters: OrderedDict[str, AdapterRef] = OrderedDict()
        # adapters of requests still decoding, by key: never evicted while in use
        self._in_use: dict[str, int] = {}
        # gradients off for good on the engine's thread (a `no_grad` block cannot span the turns
        # of interleaved requests)
        self._turns = RoundRobin("anvil-torch-sampler", on_thread_start=lambda: torch.set_grad_enabled(False))
        self._counts = RequestCounts()

    def cannot_serve(self, adapter: AdapterRef | None) -> str | None:
        return None  # the same layers as the trainer: whatever it trains, this engine serves

    async def sample(self, work: SampleWork, adapter: AdapterRef | None) -> SampleResult:
        with self._counts.counting():
            future = self._turns.submit(self._steps(work, adapter))
            try:
                result = await asyncio.wrap_future(future)
            finally:
                future.cancel()  # a caller that left: the request stops at its next turn
        return self._counts.done(result)

    async def stream(self, work: SampleWork, adapter: AdapterRef | None) -> AsyncIterator[SampleDelta]:
        loop = asyncio.get_running_loop()
        arrivals: asyncio.Queue = asyncio.Queue()
        stopped = threading.Event()
        work = dataclasses.replace(work, prompt_logprobs=False, topk_prompt_logprobs=0)

        def deliver(item) -> None:
            loop.call_soon_threadsafe(arrivals.put_nowait, item)

        def run() -> Steps:
            # every step's deltas, then None (done) or the error, in order, on the engine's loop
            try:
                yield from self._steps(work, adapter, on_step=deliver, stopped=stopped)
            except BaseException as exc:  # deliberate: handed to the consumer, which raises it
                deliver(exc)
            else:
                deliver(None)

        with self._counts.counting():
            self._turns.submit(run())
            tokens = 0
            try:
                while (item := await arrivals.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    for delta in item:
                        tokens += len(delta.tokens)
                        yield delta
                self._counts.finished(tokens)
            finally:
                stopped.set()  # a consumer that left early ends the decoding loop at its next step

    def _steps(
        self,
        work: SampleWork,
        adapter: AdapterRef | None,
        on_step: OnStep | None = None,
        stopped: threading.Event | None = None,
    ) -> Steps:
        """The request as a job for the engine's thread: yields after each decoding step and
        returns the SampleResult; `on_step` gets each step's deltas, and `stopped` ends it early."""
        key = self._activate(adapter)
        try:
            return (yield from self._sample(work, key, on_step, stopped))
        finally:
            self._release(key)

    def stats(self) -> EngineStats:
        return self._counts.stats(self.kind, self.base_model, adapters_resident=len(self._adapters))

    async def aclose(self) -> None:
        self._turns.shutdown()

    def _activate(self, adapter: AdapterRef | None) -> str | None:
        """Load (or reuse) the adapter and hold it until `_release`. On the engine's thread."""
        if adapter is None:
            return None
        key = adapter.key
        self._in_use[key] = self._in_use.get(key, 0) + 1
        if key in self._adapters:
            self._adapters.move_to_end(key)
            return key
        config, weights = read_peft_adapter(adapter.folder)
        scale = float(config["lora_alpha"]) / float(config["r"])
        for path, (lora_a, lora_b) in weights.items():
            self.layers[path].adapters[key] = LoraWeights(
                lora_A=torch.nn.Parameter(lora_a.to(self.device), requires_grad=False),
                lora_B=torch.nn.Parameter(lora_b.to(self.device), requires_grad=False),
                scale=scale,
            )
        self._adapters[key] = adapter
        idle = [k for k in self._adapters if k not in self._in_use]
        for evicted in idle[: max(0, len(self._adapters) - MAX_LOADED_ADAPTERS)]:
            del self._adapters[evicted]
            for layer in self.layers.values():
                layer.adapters.pop(evicted, None)
        return key

    def _release(self, key: str | None) -> None:
        if key is None:
            return
        self._in_use[key] -= 1
        if not self._in_use[key]:
            del self._in_use[key]

    def _sample(
        self, work: SampleWork, key: str | None, on_step: OnStep | None, stopped: threading.Event | None
    ) -> Steps:
        n = work.num_samples
        prompt = torch.tensor([work.prompt], dtype=torch.long, device=self.device)
        with routed(self.routing, [Segment(key, 0, 1)]):
            out = self.model(input_ids=prompt, use_cache=True)
        yield
        result = SampleResult(sequences=[])
        if work.prompt_logprobs or work.topk_prompt_logprobs:
            _fill_prompt_logprobs(result, out.logits[0].float(), work)
        cache = out.past_key_values
        cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].float().expand(n, -1)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(work.seed if work.seed is not None else torch.seed())
        stop_tokens = set(work.stop_tokens) if work.stop_tokens is not None else set()
        if work.stop_tokens is None and work.stop_strings is None:
            stop_tokens = set(self.eos_token_ids)
        tokens: list[list[int]] = [[] for _ in range(n)]
        logprobs: list[list[float]] = [[] for _ in range(n)]
        topk: list[list[TopLogprobs]] | None = [[] for _ in range(n)] if work.topk_sample_logprobs > 0 else None
        done = [False] * n
        for step in range(work.max_tokens):
            if stopped is not None and stopped.is_set():
                break
            chosen, chosen_lp, top = _choose(logits, work, generator)
            deltas = []
            for i in range(n):
                if done[i]:
                    continue
                tokens[i].append(int(chosen[i]))
                logprobs[i].append(float(chosen_lp[i]))
                if topk is not None:
                    topk[i].append(top[i])
                done[i] = int(chosen[i]) in stop_tokens or self._hit_stop_string(tokens[i], work.stop_strings)
                last = done[i] or step == work.max_tokens - 1
                deltas.append(
                    SampleDelta(
                        index=i,
                        tokens=tokens[i][-1:],
                        logprobs=logprobs[i][-1:],
                        topk=topk[i][-1:] if topk is not None else None,
                        stop_reason=("stop" if done[i] else "length") if last else None,
                    )
                )
            if on_step is not None:
                on_step(deltas)
            if all(done):
                break
            with routed(self.routing, [Segment(key, 0, n)]):
                out = self.model(input_ids=chosen[:, None], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1].float()
            yield
        result.sequences = [
            SampledSequence(
                tokens=tokens[i],
                logprobs=logprobs[i],
                stop_reason="stop" if done[i] else "length",
                topk=topk[i] if topk is not None else None,
            )
            for i in range(n)
        ]
        return result

    def _hit_stop_string(self, tokens: list[int], stop_strings: tuple[str, ...] | None) -> bool:
        if not stop_strings:
            return False
        text = self.tokenizer.decode(tokens, skip_special_tokens=False)
        return any(stop in text for stop in stop_strings)


def _choose(
    logits: torch.Tensor, work: SampleWork, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, list[TopLogprobs] | None]:
    """Pick one token per row; return it and its logprob under the temperature-scaled distribution
    (before top-k/top-p truncation; at temperature 0, the unscaled distribution), and the
    `work.topk_sample_logprobs` likeliest tokens of each row under that same distribution."""
    temperature = work.temperature if work.temperature > 0 else 1.0
    scaled = logits / temperature
    logprobs = torch.log_softmax(scaled, dim=-1)
    if work.temperature <= 0:
        chosen = torch.argmax(scaled, dim=-1)
    else:
        filtered = _truncate(scaled, work.top_k, work.top_p)
        probs = torch.softmax(filtered, dim=-1)
        chosen = torch.multinomial(probs, 1, generator=generator)[:, 0]
    top = None
    k = min(work.topk_sample_logprobs, logprobs.shape[-1])
    if k > 0:
        values, ids = torch.topk(logprobs, k, dim=-1)
        top = [list(zip(row_ids, row_values, strict=True)) for row_ids, row_values in zip(ids.tolist(), values.tolist(), strict=True)]
    return chosen, logprobs.gather(-1, chosen[:, None])[:, 0], top


def _truncate(scaled: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    if 0 < top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -math.inf)
    if top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, dim=-1, descending=True)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token when the tokens ranked above it already cover top_p
        drop_sorted = cumulative - torch.softmax(sorted_logits, dim=-1) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scaled = scaled.masked_fill(drop, -math.inf)
    return scaled


def _fill_prompt_logprobs(result: SampleResult, logits_TV: torch.Tensor, work: SampleWork) -> None:
    prompt = torch.tensor(work.prompt, dtype=torch.long, device=logits_TV.device)
    logprobs_TV = torch.log_softmax(logits_TV, dim=-1)
    if work.prompt_logprobs:
        values = np.full(len(work.prompt), np.nan, dtype=np.float32)
        if len(work.prompt) > 1:
            picked = logprobs_TV[:-1].gather(-1, prompt[1:, None])[:, 0]
            values[1:] = picked.cpu().numpy()
        result.prompt_logprobs = values
    k = min(work.topk_prompt_logprobs, logprobs_TV.shape[-1])
    if k > 0:
        ids = np.zeros((len(work.prompt), k), dtype=np.int32)
        values = np.full((len(work.prompt), k), TOPK_PAD_LOGPROB, dtype=np.float32)
        if len(work.prompt) > 1:
            top = torch.topk(logprobs_TV[:-1], k, dim=-1)
            ids[1:] = top.indices.cpu().numpy()
            values[1:] = top.values.cpu().numpy()
        result.topk_prompt_ids, result.topk_prompt_logprobs = ids, values


def eos_token_ids(path: Path, tokenizer, config) -> list[int]:
    ids: set[int] = set()
    try:
        eos = GenerationConfig.from_pretrained(path).eos_token_id
    except OSError:
        eos = config.eos_token_id
    for value in eos if isinstance(eos, list) else [eos]:
        if value is not None:
            ids.add(int(value))
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)
