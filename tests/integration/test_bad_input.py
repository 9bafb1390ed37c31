"""Every kind of bad input gets a clear error naming the problem, and the server keeps serving.

A user error is a 4xx with a body (raised at once by the SDK) or a future resolved to
{"error", "category": "user"} (raised as RequestFailedError); never a 5xx, which the SDK retries.
"""

import httpx
import pytest
import tinker
from tinker import types
from tinker.proto import tinker_public_pb2 as pb

from sdk_helpers import API_KEY
from sdk_helpers import TINY, new_trainer, sft_datum


@pytest.fixture(scope="module")
def trainer(service_client):
    return new_trainer(service_client, rank=4, seed=31)


@pytest.fixture(autouse=True)
def still_serving_afterwards(service_client, tokenizer, trainer):
    yield
    out = trainer.forward([sft_datum(tokenizer.encode("Still serving."))], "cross_entropy").result()
    assert out.metrics["loss:sum"] > 0


def _post(server, path: str, **kwargs) -> httpx.Response:
    headers = {"X-API-Key": API_KEY, **kwargs.pop("headers", {})}
    return httpx.post(f"{server.base_url}/api/v1/{path}", headers=headers, timeout=30, **kwargs)


def test_unknown_base_model(service_client):
    with pytest.raises(tinker.BadRequestError, match="no/such-model.*not served"):
        service_client.create_lora_training_client(base_model="no/such-model", rank=4).result()


def test_unknown_model_id(rest_client, anvil_server, trainer):
    with pytest.raises(tinker.NotFoundError, match="sess-nope:train:0"):
        rest_client.get_training_run("sess-nope:train:0").result()
    message = pb.ForwardBackwardRequest(model_id="sess-nope:train:0", seq_id=1, loss_fn="cross_entropy")
    response = _post(anvil_server, "forward_backward", content=message.SerializeToString(),
                     headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 404
    assert "sess-nope:train:0" in response.json()["detail"]


@pytest.mark.filterwarnings("ignore:DEPRECATED:FutureWarning")  # load_state is deprecated, still served
def test_unknown_checkpoint_path(service_client, trainer):
    missing = f"tinker://{trainer.model_id}/weights/never-saved"
    with pytest.raises(tinker.NotFoundError, match="never-saved"):
        service_client.create_training_client_from_state(missing).result()
    with pytest.raises(tinker.NotFoundError, match="never-saved"):
        service_client.create_sampling_client(model_path=f"tinker://{trainer.model_id}/sampler_weights/never-saved").result()
    with pytest.raises(tinker.RequestFailedError, match="never-saved"):
        trainer.load_state(missing).result()


def test_token_ids_outside_vocabulary(trainer, tokenizer):
    vocab = 1 << 20
    with pytest.raises(tinker.RequestFailedError, match=f"token id {vocab} outside the vocabulary"):
        trainer.forward([sft_datum([1, 2, vocab, 3])], "cross_entropy").result()
    with pytest.raises(tinker.RequestFailedError, match="target_tokens.*outside the vocabulary"):
        trainer.forward([sft_datum([1, 2, 3, vocab])], "cross_entropy").result()


def test_token_ids_outside_vocabulary_when_sampling(trainer):
    sampler = trainer.save_weights_and_get_sampling_client().result()
    with pytest.raises(tinker.BadRequestError, match="outside the vocabulary"):
        sampler.sample(types.ModelInput.from_ints([1, -5]), 1, types.SamplingParams(max_tokens=2)).result()


def test_empty_chunks(trainer):
    empty_chunk = types.ModelInput(chunks=[types.EncodedTextChunk(tokens=[1, 2]), types.EncodedTextChunk(tokens=[])])
    datum = types.Datum(model_input=empty_chunk, loss_fn_inputs={"target_tokens": [2, 3], "weights": [1.0, 1.0]})
    with pytest.raises(tinker.RequestFailedError, match=r"chunks\[1\] is empty"):
        trainer.forward([datum], "cross_entropy").result()
    sampler = trainer.save_weights_and_get_sampling_client().result()
    with pytest.raises(tinker.BadRequestError, match="empty"):
        sampler.sample(types.ModelInput(chunks=[types.EncodedTextChunk(tokens=[])]), 1, types.SamplingParams(max_tokens=2)).result()


def test_loss_fn_inputs_length_mismatch(trainer):
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3, 4]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0, 1.0]},
    )
    with pytest.raises(tinker.RequestFailedError, match=r"target_tokens.*shape \[3\].*model_input length 4"):
        trainer.forward_backward([datum], "cross_entropy").result()
    datum = types.Datum(
        model_input=types.ModelInput.from_ints([1, 2, 3]),
        loss_fn_inputs={"target_tokens": [2, 3, 4], "weights": [1.0, 1.0]},
    )
    with pytest.raises(tinker.RequestFailedError, match=r"weights.*shape \[2\]"):
        trainer.forward_backward([datum], "cross_entropy").result()


def test_unknown_loss_fn(trainer):
    datum = sft_datum([1, 2, 3, 4])
    with pytest.raises(tinker.RequestFailedError, match="unknown loss 'no_such_loss'.*cross_entropy"):
        trainer.forward_backward([datum], "no_such_loss").result()


def test_malformed_protobuf_body(anvil_server):
    response = _post(anvil_server, "forward_backward", content=b"\xff\xfe not a protobuf \x00\x01",
                     headers={"Content-Type": "application/x-protobuf"})
    assert response.status_code == 400
    assert "ForwardBackwardRequest" in response.json()["detail"]


def test_max_tokens_not_positive(trainer, tokenizer):
    sampler = trainer.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(tokenizer.encode("Hello"))
    for bad in (0, -3):
        with pytest.raises(tinker.BadRequestError, match="max_tokens must be >= 1"):
            sampler.sample(prompt, 1, types.SamplingParams(max_tokens=bad)).result()


def test_unknown_request_id_is_404_not_5xx(anvil_server):
    response = _post(anvil_server, "retrieve_future", json={"request_id": "req-never-issued"})
    assert response.status_code == 404 and "req-never-issued" in response.json()["detail"]


def test_missing_api_key_is_401_with_body(anvil_server):
    response = httpx.post(f"{anvil_server.base_url}/api/v1/create_session", json={}, timeout=10)
    assert response.status_code == 401 and "X-API-Key" in response.json()["detail"]


def test_other_users_cannot_see_a_model(anvil_server, trainer):
    with pytest.raises(tinker.NotFoundError):
        tinker.RestClient(base_url=anvil_server.base_url, api_key="tml-someone-else").get_training_run(trainer.model_id).result()


def test_bad_adam_params(trainer):
    with pytest.raises(tinker.RequestFailedError, match="learning_rate must be >= 0"):
        trainer.optim_step(types.AdamParams(learning_rate=-1.0)).result()
    with pytest.raises(tinker.RequestFailedError, match="beta2 must be < 1"):
        trainer.optim_step(types.AdamParams(beta2=1.5)).result()


def test_sampling_unknown_base_model(service_client):
    with pytest.raises(tinker.BadRequestError, match="not served"):
        service_client.create_sampling_client(base_model="no/such-model").result()


def test_base_model_is_tiny(trainer):
    assert trainer.get_info().model_data.model_name == TINY


def _sampling_session(anvil_server, model_path: str | None = None, base_model: str | None = None) -> str:
    session = _post(anvil_server, "create_session", json={"tags": [], "sdk_version": "0.38.0", "type": "create_session"})
    session_id = session.json()["session_id"]
    created = _post(anvil_server, "create_sampling_session", json={
        "session_id": session_id, "sampling_session_seq_id": 0, "model_path": model_path, "base_model": base_model,
    })
    assert created.status_code == 200, created.text
    return created.json()["sampling_session_id"]


def _asample(anvil_server, sampling_session_id: str, prompt: list[int], **params) -> httpx.Response:
    return _post(anvil_server, "asample", json={
        "sampling_session_id": sampling_session_id, "seq_id": 0, "num_samples": 1,
        "prompt": {"chunks": [{"type": "encoded_text", "tokens": prompt}]}, "sampling_params": params,
    })


@pytest.mark.parametrize("stop", [[1, "two"], {"a": 1}, 3, [[1]], [None]])
def test_stop_of_the_wrong_type(anvil_server, stop):
    response = _asample(anvil_server, _sampling_session(anvil_server, base_model=TINY), [1, 2], max_tokens=2, stop=stop)
    assert response.status_code in (400, 422), response.text
    assert "stop" in response.text


def test_prompt_longer_than_the_context(anvil_server):
    sampling_session_id = _sampling_session(anvil_server, base_model=TINY)
    response = _asample(anvil_server, sampling_session_id, [5] * 4096, max_tokens=4)
    assert response.status_code == 400 and "exceeds the context" in response.json()["detail"]


def test_checkpoint_of_another_base_model(service_client, trainer):
    path = trainer.save_weights_for_sampler("other-base").result().path
    with pytest.raises(tinker.BadRequestError, match="was trained on 'anvil/tiny-qwen3', not on base_model 'Qwen/Qwen3-8B'"):
        service_client.create_sampling_client(model_path=path, base_model="Qwen/Qwen3-8B").result()


def test_too_many_topk_prompt_logprobs(trainer, tokenizer):
    sampler = trainer.save_weights_and_get_sampling_client().result()
    prompt = types.ModelInput.from_ints(tokenizer.encode("Hello there"))
    with pytest.raises(tinker.BadRequestError, match="topk_prompt_logprobs must be <= 1024"):
        sampler.sample(prompt, 1, types.SamplingParams(max_tokens=1), include_prompt_logprobs=True, topk_prompt_logprobs=1025).result()
