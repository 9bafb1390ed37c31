"""A vLLM engine that dies mid-request is reported and replaced; the work it held is retried and
nothing is lost."""

import concurrent.futures
import os
import signal
import time

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families
from tinker import types

pytestmark = pytest.mark.slow


def _engine_processes(server_pid: int) -> list[psutil.Process]:
    children = psutil.Process(server_pid).children(recursive=True)
    return [p for p in children if "EngineCore" in " ".join(p.cmdline()) or "EngineCore" in p.name()]


def _restarts(base_url: str) -> float:
    text = httpx.get(f"{base_url}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    return sum(s.value for s in families["anvil_sampler_restarts"].samples)


def test_killed_engine_is_restarted_and_requests_survive(anvil_server, service_client, tokenizer):
    sampler = service_client.create_sampling_client(base_model="anvil/tiny-qwen3").result()
    prompt = types.ModelInput.from_ints(tokenizer.encode("Once upon a time"))
    sampler.sample(prompt, 1, types.SamplingParams(max_tokens=2)).result()  # the engine is up
    engines = _engine_processes(anvil_server.process.pid)
    if not engines:
        pytest.skip("the server's sampler is not a vLLM engine with its own process")
    before = _restarts(anvil_server.base_url)
    params = types.SamplingParams(max_tokens=400, temperature=1.0, seed=1, stop=[])
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pending = [pool.submit(lambda: sampler.sample(prompt, 2, params).result()) for _ in range(4)]
        time.sleep(1.0)  # let the requests reach the engine
        for process in engines:
            os.kill(process.pid, signal.SIGKILL)
        results = [future.result(timeout=300) for future in pending]
    for result in results:
        assert [len(seq.tokens) for seq in result.sequences] == [400, 400]
    assert _restarts(anvil_server.base_url) == before + 1
    after = sampler.sample(prompt, 1, types.SamplingParams(max_tokens=3, seed=1)).result()
    assert len(after.sequences[0].tokens) >= 1
