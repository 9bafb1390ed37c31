"""A sampling engine in a Ray actor answers as the same engine in-process: samples, streams,
errors; a killed actor is EngineDead, which the fleet answers by replacing it."""

import os
import signal

import numpy as np
import pytest

from anvil.tiny_qwen3 import TINY_QWEN3_NAME
from anvil.types import SampleWork
from sampler.engine import EngineDead

ray = pytest.importorskip("ray", reason="the ray extra is not installed (scripts/setup.sh installs it)")

pytestmark = pytest.mark.slow

PROMPT = [5, 9, 2, 7]


@pytest.fixture(scope="module")
def ray_engine(loop, tiny_model):
    from anvil.ray_cluster import ClusterSettings, connect, shutdown
    from sampler.ray_engine import RaySamplingEngine

    connect(ClusterSettings())
    engine = loop.run(RaySamplingEngine.start("torch", TINY_QWEN3_NAME, tiny_model, 0.0, {}))
    yield engine
    loop.run(engine.aclose())
    shutdown()


def _tokens(result):
    return [seq.tokens for seq in result.sequences]


def test_samples_and_streams_equal_the_in_process_engine(loop, ray_engine, torch_engine, adapters):
    adapter = adapters.make("ray", seed=4)
    work = SampleWork(prompt=PROMPT, num_samples=2, max_tokens=12, seed=11, stop_tokens=(), prompt_logprobs=True)
    here = loop.run(torch_engine.sample(work, adapter))
    there = loop.run(ray_engine.sample(work, adapter))
    assert _tokens(there) == _tokens(here)
    assert [seq.logprobs for seq in there.sequences] == [seq.logprobs for seq in here.sequences]
    np.testing.assert_array_equal(there.prompt_logprobs, here.prompt_logprobs)
    assert ray_engine.cannot_serve(adapter) is None

    async def streamed():
        per_sequence: dict[int, list[int]] = {}
        async for delta in ray_engine.stream(work, adapter):
            per_sequence.setdefault(delta.index, []).extend(delta.tokens)
        return [per_sequence[i] for i in sorted(per_sequence)]

    assert loop.run(streamed()) == _tokens(here)
    stats = ray_engine.stats()
    assert (stats.requests_done, stats.tokens_generated, stats.in_flight) == (2, 48, 0)


def test_a_killed_engine_actor_is_engine_dead(loop, ray_engine, tiny_model):
    from sampler.ray_engine import RaySamplingEngine

    engine = loop.run(RaySamplingEngine.start("torch", TINY_QWEN3_NAME, tiny_model, 0.0, {}))
    os.kill(engine.pid, signal.SIGKILL)
    with pytest.raises(EngineDead, match="sampler actor.*(died|restarted)"):
        loop.run(engine.sample(SampleWork(prompt=PROMPT, max_tokens=2), None))
    loop.run(engine.aclose())


def test_a_vllm_engine_actor_runs_tensor_parallel_over_two_workers(loop, ray_engine, torch_engine, adapters, tiny_model):
    """`--vllm-tensor-parallel 2` on a cluster: vLLM's two workers inside the engine's actor."""
    from sampler.ray_engine import RaySamplingEngine

    options = {"lora_slots": 2, "hot_swap": False, "tensor_parallel_size": 2}
    engine = loop.run(RaySamplingEngine.start("vllm", TINY_QWEN3_NAME, tiny_model, 0.0, options))
    try:
        adapter = adapters.make("ray-tp", seed=6)
        work = SampleWork(prompt=PROMPT, max_tokens=12, temperature=0.0, stop_tokens=(), prompt_logprobs=True)
        there = loop.run(engine.sample(work, adapter))
        here = loop.run(torch_engine.sample(work, adapter))
        assert _tokens(there) == _tokens(here)
        np.testing.assert_allclose(there.sequences[0].logprobs, here.sequences[0].logprobs, atol=1e-4, rtol=0)
        np.testing.assert_allclose(there.prompt_logprobs[1:], here.prompt_logprobs[1:], atol=1e-4, rtol=0)
    finally:
        loop.run(engine.aclose())
