"""Acknowledged checkpoints survive a server restart: listed, loadable, sampleable; so do
finished futures and idempotency keys."""

import time

import httpx
import numpy as np
import tinker
from tinker import types

from gateway.futures import RESTARTED
from gateway.local_server import AnvilServer
from sdk_helpers import API_KEY
from sdk_helpers import TINY, logprobs_of, sft_datum


def test_checkpoints_survive_a_restart(tmp_path):
    tokens = list(range(10, 30))
    data = [sft_datum(tokens)]
    with AnvilServer(tmp_path) as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        trainer = service.create_lora_training_client(base_model=TINY, rank=4, seed=0).result()
        trainer.forward_backward(data, "cross_entropy")
        trainer.optim_step(types.AdamParams(learning_rate=1e-2)).result()
        state = trainer.save_state("before-restart").result().path
        sampler_path = trainer.save_weights_for_sampler("before-restart").result().path
        expected = logprobs_of(trainer.forward(data, "cross_entropy").result())[0]
        model_id = trainer.model_id
        service.close("success").result()

    with AnvilServer(tmp_path) as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        rest = tinker.RestClient(base_url=server.base_url, api_key=API_KEY)
        listed = {c.tinker_path for c in rest.list_checkpoints(model_id).result().checkpoints}
        assert listed == {state, sampler_path}
        resumed = service.create_training_client_from_state_with_optimizer(state).result()
        np.testing.assert_allclose(logprobs_of(resumed.forward(data, "cross_entropy").result())[0], expected, atol=1e-6)
        sampler = service.create_sampling_client(model_path=sampler_path).result()
        computed = sampler.compute_logprobs(types.ModelInput.from_ints(tokens)).result()
        np.testing.assert_allclose(computed[1:], expected, atol=1e-4)
        service.close("success").result()


def test_futures_and_idempotency_keys_survive_a_kill(tmp_path):
    """A finished future is answered after a kill -9 and a restart, to its owner only; one the
    killed server was still holding fails as a `server` error saying so; a retried
    create_session still finds its session."""
    alice, bob = {"X-API-Key": API_KEY}, {"X-API-Key": "tml-someone-else"}
    with AnvilServer(tmp_path) as server:
        with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=60) as http:
            session = http.post("/create_session", json={}, headers={**alice, "X-Idempotency-Key": "once"}).json()
            created = http.post(
                "/create_model",
                json={"session_id": session["session_id"], "model_seq_id": 0, "base_model": TINY, "lora_config": {"rank": 4}},
                headers=alice,
            ).json()
            finished = _result(http, created["request_id"], alice)
            assert finished == {"model_id": created["model_id"], "type": "create_model"}
            # seq 1 never comes, so the press holds seq 2 (for SEQ_GAP_TIMEOUT_S): it is pending at the kill
            held = http.post("/optim_step", json={"model_id": created["model_id"], "seq_id": 2}, headers=alice).json()
            time.sleep(0.5)  # its row is written (by the futures' writer thread), its result not yet
        server.process.kill()
        server.process.wait()

    with AnvilServer(tmp_path) as server:
        with httpx.Client(base_url=f"{server.base_url}/api/v1", timeout=60) as http:
            assert _result(http, created["request_id"], alice) == finished
            assert http.post("/retrieve_future", json={"request_id": created["request_id"]}, headers=bob).status_code == 404
            assert _result(http, held["request_id"], alice) == {"error": RESTARTED, "category": "server"}
            again = http.post("/create_session", json={}, headers={**alice, "X-Idempotency-Key": "once"}).json()
            assert again["session_id"] == session["session_id"]
            theirs = http.post("/create_session", json={}, headers={**bob, "X-Idempotency-Key": "once"}).json()
            assert theirs["session_id"] != session["session_id"]


def _result(http: httpx.Client, request_id: str, headers: dict) -> dict:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        answer = http.post("/retrieve_future", json={"request_id": request_id}, headers=headers)
        assert answer.status_code == 200, answer.text
        if answer.json().get("type") != "try_again":
            return answer.json()
    raise AssertionError(f"{request_id} did not finish")


def test_a_server_on_postgresql_keeps_its_metadata_across_a_restart(tmp_path, postgres_cluster):
    url = postgres_cluster.new_database()
    flags = ["--database-url", url]
    with AnvilServer(tmp_path, args=flags) as server:
        service = tinker.ServiceClient(base_url=server.base_url, api_key=API_KEY)
        trainer = service.create_lora_training_client(base_model=TINY, rank=4, seed=0).result()
        state = trainer.save_state("on-postgresql").result().path
        model_id = trainer.model_id
        service.close("success").result()
    assert not (tmp_path / "metadata.sqlite").exists()

    with AnvilServer(tmp_path, args=flags) as server:
        rest = tinker.RestClient(base_url=server.base_url, api_key=API_KEY)
        assert [c.tinker_path for c in rest.list_checkpoints(model_id).result().checkpoints] == [state]
        assert rest.get_training_run(model_id).result().training_run_id == model_id
