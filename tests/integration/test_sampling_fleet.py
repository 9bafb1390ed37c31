"""The sampling fleet through the SDK: hot-swapped weights in an RL-style loop, many adapters
sampled concurrently, and the fleet's figures on /metrics."""

import concurrent.futures

import httpx
import numpy as np
import pytest
import tinker
from prometheus_client.parser import text_string_to_metric_families
from tinker import types

from sdk_helpers import API_KEY, logprobs_of, new_trainer, sft_datum

PROMPT = "Once upon a time"
# fp32 engines agree with the fp32 trainer to ~1e-5; vLLM's kernels sum in another order
PARITY_ATOL = 2e-3


def _greedy(sampler, prompt: list[int], max_tokens: int = 8) -> types.SampledSequence:
    params = types.SamplingParams(max_tokens=max_tokens, temperature=0.0, stop=[])
    return sampler.sample(types.ModelInput.from_ints(prompt), 1, params).result().sequences[0]


def _trainer_logprobs(trainer, prompt: list[int], tokens: list[int]) -> np.ndarray:
    (lp,) = logprobs_of(trainer.forward([sft_datum(prompt + tokens)], "cross_entropy").result())
    return lp[len(prompt) - 1 :]


def test_rl_loop_samples_the_newest_weights_every_step(service_client, tokenizer):
    trainer = new_trainer(service_client, rank=8, seed=41)
    prompt = tokenizer.encode(PROMPT)
    targets = [tokenizer.encode(f"{PROMPT} {word}") for word in ("dragons", "pirates", "robots", "wizards")]
    previous = None
    outputs = []
    for target in targets:
        for _ in range(6):  # pull the policy toward a new continuation each step
            trainer.forward_backward([sft_datum(target)], "cross_entropy")
            trainer.optim_step(types.AdamParams(learning_rate=5e-2))
        sampler = trainer.save_weights_and_get_sampling_client().result()
        seq = _greedy(sampler, prompt)
        # the sampler's logprobs are those of the weights just saved...
        np.testing.assert_allclose(seq.logprobs, _trainer_logprobs(trainer, prompt, list(seq.tokens)), atol=PARITY_ATOL)
        if previous is not None:
            # ...and not those of the step before
            old = previous.compute_logprobs(types.ModelInput.from_ints(prompt + list(seq.tokens))).result()
            assert np.max(np.abs(np.asarray(old[len(prompt):]) - np.asarray(seq.logprobs))) > 0.05
        outputs.append(tokenizer.decode(seq.tokens))
        previous = sampler
    assert len(set(outputs)) == len(outputs), f"each step's policy should answer differently: {outputs}"


def test_many_adapters_sampled_concurrently_by_four_clients(anvil_server, tokenizer):
    prompt = tokenizer.encode(PROMPT)
    clients = [tinker.ServiceClient(base_url=anvil_server.base_url, api_key=API_KEY) for _ in range(4)]
    # 4 clients × 5 named sampler checkpoints = 20 adapters, more than an engine keeps resident
    expected: dict[str, tuple[list[int], list[float]]] = {}
    for c, client in enumerate(clients):
        trainer = new_trainer(client, rank=4 + c, seed=100 + c)
        data = [sft_datum(tokenizer.encode(f"{PROMPT} client {c}"))]
        for k in range(5):
            trainer.forward_backward(data, "cross_entropy")
            trainer.optim_step(types.AdamParams(learning_rate=3e-2))
            path = trainer.save_weights_for_sampler(f"c{c}-k{k}").result().path
            seq = _greedy(client.create_sampling_client(model_path=path).result(), prompt)
            np.testing.assert_allclose(seq.logprobs, _trainer_logprobs(trainer, prompt, list(seq.tokens)), atol=PARITY_ATOL)
            expected[path] = (list(seq.tokens), list(seq.logprobs))
    assert len({tuple(tokens) for tokens, _ in expected.values()}) > 1

    def sample_all(client_index: int) -> dict[str, types.SampledSequence]:
        client = clients[client_index]
        paths = list(expected)[client_index::4] + list(expected)[(client_index + 1) % 4 :: 4]
        samplers = {path: client.create_sampling_client(model_path=path).result() for path in paths}
        futures = {
            path: sampler.sample(types.ModelInput.from_ints(prompt), 1, types.SamplingParams(max_tokens=8, temperature=0.0, stop=[]))
            for path, sampler in samplers.items()
        }
        return {path: future.result().sequences[0] for path, future in futures.items()}

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = [answer for result in pool.map(sample_all, range(4)) for answer in result.items()]
    assert len(answers) == 40
    for path, seq in answers:
        tokens, logprobs = expected[path]
        assert list(seq.tokens) == tokens, path
        np.testing.assert_allclose(seq.logprobs, logprobs, atol=1e-4)


def test_metrics_show_each_engine(anvil_server, service_client, tokenizer):
    sampler = service_client.create_sampling_client(base_model="anvil/tiny-qwen3").result()
    _greedy(sampler, tokenizer.encode(PROMPT), max_tokens=3)
    response = httpx.get(f"{anvil_server.base_url}/metrics", timeout=10)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    engines = {sample.labels["engine"]: sample.labels for sample in families["anvil_sampler_engine_up"].samples}
    assert any(labels["base_model"] == "anvil/tiny-qwen3" for labels in engines.values())
    tokens = {s.labels["engine"]: s.value for s in families["anvil_sampler_tokens_generated"].samples}
    assert sum(tokens.values()) >= 3
    assert {"anvil_sampler_queue_depth", "anvil_sampler_adapters_resident", "anvil_sampling_in_flight"} <= set(families)


@pytest.mark.parametrize("seed", [3])
def test_same_seed_same_tokens_across_sessions(service_client, tokenizer, seed):
    prompt = types.ModelInput.from_ints(tokenizer.encode(PROMPT))
    params = types.SamplingParams(max_tokens=10, temperature=1.0, seed=seed)
    a = service_client.create_sampling_client(base_model="anvil/tiny-qwen3").result().sample(prompt, 4, params).result()
    b = service_client.create_sampling_client(base_model="anvil/tiny-qwen3").result().sample(prompt, 4, params).result()
    assert [s.tokens for s in a.sequences] == [s.tokens for s in b.sequences]
