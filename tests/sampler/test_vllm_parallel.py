"""vLLM's own parallelism inside one engine on this CPU: tensor parallel over 2 worker processes
(LoRA mode) and data parallel over 2 engine cores (hot-swap mode) sample as the torch reference
does, base model and adapter alike (anvil/device.py splits the cores between the workers)."""

import pytest
from test_vllm_engine import ALL_TARGETS, PROMPT, assert_greedy_matches_torch, assert_same_sampling, greedy

from anvil.device import vllm_cpu_threads_bind
from anvil.tiny_qwen3 import TINY_QWEN3_NAME

pytestmark = pytest.mark.slow


def _start(loop, model, **kwargs):
    from sampler.vllm_engine import VllmSamplingEngine

    return loop.run(VllmSamplingEngine.start(TINY_QWEN3_NAME, model, **kwargs))


@pytest.fixture(scope="module")
def tensor_parallel_engine(loop, tiny_model):
    engine = _start(loop, tiny_model, lora_slots=2, max_lora_rank=16, hot_swap=False, tensor_parallel_size=2)
    yield engine
    loop.run(engine.aclose())


@pytest.fixture(scope="module")
def data_parallel_engine(loop, tiny_model):
    engine = _start(loop, tiny_model, lora_slots=0, hot_swap=True, data_parallel_size=2)
    yield engine
    loop.run(engine.aclose())


@pytest.fixture(scope="module")
def parallel_adapter(adapters):
    return adapters.make("parallel", seed=21, targets=ALL_TARGETS)


@pytest.mark.parametrize("engine_name", ["tensor_parallel_engine", "data_parallel_engine"])
@pytest.mark.parametrize("with_adapter", [False, True], ids=["base", "adapter"])
def test_a_parallel_engine_samples_as_the_torch_reference(request, loop, torch_engine, parallel_adapter, engine_name, with_adapter):
    engine = request.getfixturevalue(engine_name)
    assert_greedy_matches_torch(loop, engine, torch_engine, parallel_adapter if with_adapter else None)


def test_concurrent_requests_on_both_data_parallel_cores_answer_as_alone(loop, data_parallel_engine, torch_engine, parallel_adapter):
    import asyncio

    works = [greedy(prompt=PROMPT[i:] + PROMPT[:i]) for i in range(6)]

    async def together():
        return await asyncio.gather(*(data_parallel_engine.sample(w, parallel_adapter) for w in works))

    for got, work in zip(loop.run(together()), works, strict=True):
        assert_same_sampling(got, loop.run(torch_engine.sample(work, parallel_adapter)))


def test_the_cores_are_split_between_the_workers(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: {0, 1, 2, 3, 4})
    monkeypatch.setattr("anvil.device.has_cuda", lambda: False)
    assert vllm_cpu_threads_bind(1) is None
    assert vllm_cpu_threads_bind(2) == "0,1|2,3"
    assert vllm_cpu_threads_bind(4) == "0|1|2|3"
    with pytest.raises(ValueError, match="6 CPU workers needs 6 cores; this process may use 5"):
        vllm_cpu_threads_bind(6)
