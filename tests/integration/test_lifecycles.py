"""Models are freed when they are unloaded or their session ends (closed, or silent past the
timeout); the limits on one request and one user hold; a long request waits quietly; get_info's
tokenizer_id is what a remote client can load.

These run on a server of their own with small limits and a 3-second session timeout, so the
silent-session case is quick; its SDK clients live only briefly (the SDK heartbeats every 10 s).
"""

import logging
import time

import httpx
import numpy as np
import pytest
import tinker
from tinker import types

from sdk_helpers import TINY, sft_datum

KEY = "tml-lifecycles"
HEADERS = {"X-API-Key": KEY}
TIMEOUT_S = 3.0
MAX_MODELS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from gateway.local_server import AnvilServer

    args = [
        "--sampler-engine", "torch", "--session-timeout-s", str(TIMEOUT_S), "--long-poll-s", "0.1",
        "--max-models-per-user", str(MAX_MODELS), "--max-train-tokens", "3000", "--max-sample-tokens", "1000",
        "--tokenizer", f"{TINY}=Qwen/Qwen3-0.6B", "--train-piece-tokens", "64",
    ]
    with AnvilServer(tmp_path_factory.mktemp("lifecycles"), args=args) as running:
        yield running


@pytest.fixture
def service(server):
    client = tinker.ServiceClient(base_url=server.base_url, api_key=KEY)
    yield client
    client.close("success").result()


def _post(server, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{server.base_url}/api/v1/{path}", json=body, headers=HEADERS, timeout=30)


def _result(server, response: httpx.Response) -> dict:
    """Long-polls a future to its end: the SDK's loop, by hand."""
    assert response.status_code == 200, response.text
    request_id = response.json()["request_id"]
    for _ in range(200):
        answer = _post(server, "retrieve_future", {"request_id": request_id})
        if answer.status_code != 408:
            return answer.json()
    raise AssertionError(f"{request_id} never finished")


def _loaded_models(server) -> int:
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    line = next(line for line in text.splitlines() if line.startswith("anvil_training_models_loaded "))
    return int(float(line.split()[1]))


def _raw_session_with_model(server) -> tuple[str, str]:
    session_id = _post(server, "create_session", {"tags": []}).json()["session_id"]
    created = _result(server, _post(server, "create_model", {
        "session_id": session_id, "model_seq_id": 0, "base_model": TINY, "lora_config": {"rank": 4},
    }))
    return session_id, created["model_id"]


def test_unload_model_frees_the_model_and_its_queued_work_fails(server, service, tokenizer):
    training = service.create_lora_training_client(base_model=TINY, rank=4).result()
    datum = sft_datum(tokenizer.encode("Unload me."))
    assert training.forward([datum], "cross_entropy").result().metrics["loss:sum"] > 0
    before = _loaded_models(server)
    answer = _result(server, _post(server, "unload_model", {"model_id": training.model_id}))
    assert answer == {"model_id": training.model_id, "type": "unload_model"}
    assert _loaded_models(server) == before - 1
    with pytest.raises(tinker.NotFoundError, match="not loaded"):
        training.forward([datum], "cross_entropy").result()
    # unloading it again is a clear 404, not a crash
    assert _post(server, "unload_model", {"model_id": training.model_id}).status_code == 404


def test_closing_the_service_client_unloads_its_models(server, tokenizer):
    client = tinker.ServiceClient(base_url=server.base_url, api_key=KEY)
    training = client.create_lora_training_client(base_model=TINY, rank=4).result()
    training.forward([sft_datum(tokenizer.encode("Closing."))], "cross_entropy").result()
    before = _loaded_models(server)
    client.close("success").result()
    deadline = time.monotonic() + 10
    while _loaded_models(server) != before - 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _loaded_models(server) == before - 1


def test_a_session_without_heartbeats_ends_and_frees_its_models(server):
    session_id, model_id = _raw_session_with_model(server)
    assert _post(server, "session_heartbeat", {"session_id": session_id}).status_code == 200
    loaded = _loaded_models(server)
    time.sleep(TIMEOUT_S * 2.5)
    assert _loaded_models(server) == loaded - 1
    # the SDK stops its heartbeat loop on a 410
    assert _post(server, "session_heartbeat", {"session_id": session_id}).status_code == 410
    ended = _post(server, "create_model", {"session_id": session_id, "model_seq_id": 1, "base_model": TINY})
    assert ended.status_code == 400 and "has ended" in ended.json()["detail"]
    gone = _post(server, "optim_step", {"model_id": model_id, "seq_id": 1, "adam_params": {"learning_rate": 1e-3}})
    assert gone.status_code == 404 and "not loaded" in gone.json()["detail"]


def test_one_user_may_hold_only_so_many_models(server, service):
    clients = [service.create_lora_training_client(base_model=TINY, rank=2).result() for _ in range(MAX_MODELS)]
    with pytest.raises(tinker.BadRequestError, match="max-models-per-user"):
        service.create_lora_training_client(base_model=TINY, rank=2).result()
    # another user is not affected
    other = tinker.ServiceClient(base_url=server.base_url, api_key="tml-lifecycles-other")
    other.create_lora_training_client(base_model=TINY, rank=2).result()
    other.close("success").result()
    _result(server, _post(server, "unload_model", {"model_id": clients[0].model_id}))
    service.create_lora_training_client(base_model=TINY, rank=2).result()


def test_training_lengths_are_bounded_by_the_context_and_the_request_limit(server, service):
    training = service.create_lora_training_client(base_model=TINY, rank=2).result()
    context = 4096  # the built-in tiny model's max_position_embeddings
    too_long = sft_datum(list(range(1, context + 3)))  # its input: context + 1 tokens
    with pytest.raises(tinker.RequestFailedError, match=r"data\[0\] has 4097 tokens; the model's context is 4096"):
        training.forward_backward([too_long], "cross_entropy").result()
    # each datum fits, together they are over --max-train-tokens
    several = [sft_datum(list(range(1, 1001))) for _ in range(4)]
    with pytest.raises(tinker.RequestFailedError, match="max-train-tokens"):
        training.forward_backward(several, "cross_entropy").result()
    assert training.forward_backward(several[:2], "cross_entropy").result().metrics["loss:sum"] > 0


def test_sampling_size_is_bounded(server, service):
    sampler = service.create_sampling_client(base_model=TINY).result()
    prompt = types.ModelInput.from_ints([1, 2, 3])
    with pytest.raises(tinker.BadRequestError, match="num_samples × max_tokens"):
        sampler.sample(prompt, num_samples=64, sampling_params=types.SamplingParams(max_tokens=100)).result()
    result = sampler.sample(prompt, num_samples=4, sampling_params=types.SamplingParams(max_tokens=8)).result()
    assert len(result.sequences) == 4


def test_zstd_bodies_inflating_past_the_limit_are_refused(server, service):
    import zstandard

    training = service.create_lora_training_client(base_model=TINY, rank=2).result()
    # 300 MiB of zeros compress to a few KB
    bomb = zstandard.ZstdCompressor().compress(bytes(300 << 20))
    started = time.monotonic()
    answer = httpx.post(
        f"{server.base_url}/api/v1/forward_backward", content=bomb, timeout=60,
        headers={**HEADERS, "Content-Type": "application/x-protobuf", "Content-Encoding": "zstd"},
    )
    assert answer.status_code == 400 and "decompresses to more than" in answer.json()["detail"]
    assert time.monotonic() - started < 30
    assert training.forward([sft_datum([1, 2, 3, 4])], "cross_entropy").result().metrics["loss:sum"] > 0


def test_a_long_request_waits_without_retry_warnings(server, service, caplog):
    training = service.create_lora_training_client(base_model=TINY, rank=8).result()
    rows = [sft_datum(list(np.random.default_rng(i).integers(1, 1000, 700))) for i in range(4)]
    with caplog.at_level(logging.INFO, logger="tinker"):
        started = time.monotonic()
        training.forward_backward(rows, "cross_entropy").result()
        waited = time.monotonic() - started
    assert waited > 0.25, "the request must outlast two long polls for this test to mean anything"
    assert not [r for r in caplog.records if "try_again" in r.getMessage()]


def test_get_info_answers_the_operators_tokenizer_id(server, service):
    training = service.create_lora_training_client(base_model=TINY, rank=2).result()
    assert training.get_info().model_data.tokenizer_id == "Qwen/Qwen3-0.6B"


def test_a_model_served_under_a_hub_name_answers_that_name(service_client):
    from sdk_helpers import ALIAS_MODEL

    training = service_client.create_lora_training_client(base_model=ALIAS_MODEL, rank=2).result()
    assert training.get_info().model_data.tokenizer_id == ALIAS_MODEL
    builtin = service_client.create_lora_training_client(base_model=TINY, rank=2).result()
    assert "tiny-qwen3" in builtin.get_info().model_data.tokenizer_id  # its folder on this machine


def test_a_forward_backward_run_in_pieces_equals_one_run_whole(server, service, service_client):
    """The same request and step on this server (pieces of at most 64 tokens) and on the suite's
    server (one pass): the same loss, metrics, logprobs and weights after the step."""
    rng = np.random.default_rng(5)
    data = []
    for _ in range(5):
        tokens = rng.integers(1, 1000, 41).tolist()
        data.append(types.Datum(
            model_input=types.ModelInput.from_ints(tokens[:-1]),
            loss_fn_inputs={"target_tokens": np.asarray(tokens[1:]),
                            "logprobs": rng.normal(-3, 0.5, 40).astype(np.float32),
                            "advantages": rng.normal(0, 1, 40).astype(np.float32) * (rng.random(40) > 0.3)},
        ))
    outputs = []
    for client in (service, service_client):
        training = client.create_lora_training_client(base_model=TINY, rank=4, seed=11).result()
        out = training.forward_backward(data, "importance_sampling").result()
        training.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        after = training.forward(data, "cross_entropy").result()
        outputs.append((out, after))
    (pieced, pieced_after), (whole, whole_after) = outputs
    assert pieced.metrics.keys() == whole.metrics.keys()
    for key in whole.metrics:
        assert pieced.metrics[key] == pytest.approx(whole.metrics[key], rel=1e-4, abs=1e-5), key
    for a, b in zip(pieced.loss_fn_outputs + pieced_after.loss_fn_outputs,
                    whole.loss_fn_outputs + whole_after.loss_fn_outputs, strict=True):
        np.testing.assert_allclose(a["logprobs"].data, b["logprobs"].data, atol=1e-4)
