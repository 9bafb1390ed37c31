"""Two users on one server: every route, and every training and sampling call, checked both ways.

Each user has a session, a trained model, a training and a sampler checkpoint, a sampling
session and a finished future. The other user, on each of them, gets the same 404 an unknown id
gets (nothing says the id exists), lists none of them, and leaves them working for their owner.
A published checkpoint is readable by the other user, and still not theirs to delete, unpublish
or give a TTL.
"""

from dataclasses import dataclass

import httpx
import pytest
import tinker
from tinker import types

from sdk_helpers import TINY, sft_datum

KEYS = {"ann": "tml-two-users-ann", "bob": "tml-two-users-bob"}


@dataclass
class World:
    key: str
    service: tinker.ServiceClient
    training: tinker.TrainingClient
    session_id: str
    model_id: str
    raw_model_id: str
    request_id: str
    state_path: str
    sampler_path: str
    sampling_session_id: str


def _http(server, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{server.base_url}/api/v1", headers={"X-API-Key": key}, timeout=60)


def _finished(http: httpx.Client, request_id: str) -> dict:
    for _ in range(100):
        answer = http.post("/retrieve_future", json={"request_id": request_id})
        if answer.status_code != 408:
            assert answer.status_code == 200, answer.text
            return answer.json()
    raise AssertionError("future never finished")


def _world(server, key: str, tokenizer) -> World:
    service = tinker.ServiceClient(base_url=server.base_url, api_key=key)
    training = service.create_lora_training_client(base_model=TINY, rank=4).result()
    training.forward_backward([sft_datum(tokenizer.encode(f"{key} trains."))], "cross_entropy").result()
    training.optim_step(types.AdamParams(learning_rate=1e-3)).result()
    state = training.save_state("private-state").result().path
    sampler_path = training.save_weights_for_sampler("private-sampler").result().path
    with _http(server, key) as http:
        session_id = http.post("/create_session", json={"tags": []}).json()["session_id"]
        created = http.post("/create_model", json={"session_id": session_id, "model_seq_id": 0, "base_model": TINY,
                                                     "lora_config": {"rank": 2}}).json()
        raw_model_id = _finished(http, created["request_id"])["model_id"]
        sampling = http.post("/create_sampling_session", json={
            "session_id": session_id, "sampling_session_seq_id": 0, "model_path": sampler_path}).json()
    return World(key, service, training, session_id, training.model_id, raw_model_id, created["request_id"],
                 state, sampler_path, sampling["sampling_session_id"])


@pytest.fixture(scope="module")
def worlds(anvil_server, tokenizer):
    built = {name: _world(anvil_server, key, tokenizer) for name, key in KEYS.items()}
    yield built
    for world in built.values():
        world.service.close("success").result()


def _checkpoint_route(path: str) -> str:
    model_id, kind, name = path.removeprefix("tinker://").split("/")
    return f"/training_runs/{model_id}/checkpoints/{kind}/{name}"


def _intrusions(owner: World) -> list[tuple[str, str, dict]]:
    """(method, route, json body) of every route that names one of `owner`'s resources."""
    ckpt = _checkpoint_route(owner.state_path)
    return [
        ("POST", "/create_model", {"session_id": owner.session_id, "model_seq_id": 9, "base_model": TINY}),
        ("POST", "/get_info", {"model_id": owner.model_id}),
        ("POST", "/unload_model", {"model_id": owner.raw_model_id}),
        ("POST", "/optim_step", {"model_id": owner.raw_model_id, "seq_id": 1, "adam_params": {"learning_rate": 1e-3}}),
        ("POST", "/save_weights", {"model_id": owner.raw_model_id, "seq_id": 1, "path": "stolen"}),
        ("POST", "/save_weights_for_sampler", {"model_id": owner.raw_model_id, "seq_id": 1, "path": "stolen"}),
        ("POST", "/load_weights", {"model_id": owner.raw_model_id, "seq_id": 1, "path": owner.state_path}),
        ("POST", "/create_sampling_session", {"session_id": owner.session_id, "sampling_session_seq_id": 5, "base_model": TINY}),
        ("GET", f"/samplers/{owner.sampling_session_id}", None),
        ("POST", "/asample", {"sampling_session_id": owner.sampling_session_id, "seq_id": 1, "num_samples": 1,
                              "prompt": {"chunks": [{"type": "encoded_text", "tokens": [1, 2]}]},
                              "sampling_params": {"max_tokens": 2}}),
        ("POST", "/session_heartbeat", {"session_id": owner.session_id}),
        ("POST", f"/sessions/{owner.session_id}/finish", None),
        ("GET", f"/sessions/{owner.session_id}", None),
        ("POST", "/retrieve_future", {"request_id": owner.request_id}),
        ("GET", f"/training_runs/{owner.model_id}", None),
        ("GET", f"/training_runs/{owner.model_id}/checkpoints", None),
        ("DELETE", ckpt, None),
        ("POST", f"{ckpt}/publish", None),
        ("DELETE", f"{ckpt}/publish", None),
        ("PUT", f"{ckpt}/ttl", {"ttl_seconds": 60}),
        ("POST", "/weights_info", {"tinker_path": owner.state_path}),
    ]


@pytest.mark.parametrize("owner_name, intruder_name", [("ann", "bob"), ("bob", "ann")])
def test_another_users_resources_are_invisible_on_every_route(anvil_server, worlds, owner_name, intruder_name):
    owner, intruder = worlds[owner_name], worlds[intruder_name]
    with _http(anvil_server, intruder.key) as http:
        for method, route, body in _intrusions(owner):
            answer = http.request(method, route, json=body)
            assert answer.status_code == 404, (method, route, answer.status_code, answer.text)
        listed = [
            http.get("/training_runs").json(), http.get("/checkpoints").json(), http.get("/sessions").json(),
        ]
    for ident in (owner.model_id, owner.raw_model_id, owner.session_id, owner.state_path, owner.sampler_path):
        assert ident not in str(listed), ident
    # the OpenAI routes too
    answer = httpx.post(f"{anvil_server.base_url}/v1/completions", timeout=60,
                        headers={"Authorization": f"Bearer {intruder.key}"},
                        json={"model": owner.sampler_path, "prompt": "Hi", "max_tokens": 2})
    assert answer.status_code == 404, answer.text
    # and through the SDK
    with pytest.raises(tinker.NotFoundError):
        intruder.service.create_training_client_from_state(owner.state_path).result()
    with pytest.raises(tinker.NotFoundError):
        intruder.service.create_sampling_client(model_path=owner.sampler_path).result()
    # the owner's things all still work
    with _http(anvil_server, owner.key) as http:
        assert http.post("/session_heartbeat", json={"session_id": owner.session_id}).status_code == 200
        assert _finished(http, owner.request_id)["model_id"] == owner.raw_model_id
        assert http.post("/weights_info", json={"tinker_path": owner.state_path}).status_code == 200
        assert http.get(f"/samplers/{owner.sampling_session_id}").status_code == 200
    owner.training.forward([sft_datum([1, 2, 3, 4])], "cross_entropy").result()


def test_idempotency_keys_belong_to_their_user(anvil_server):
    sessions = {}
    for name, key in KEYS.items():
        with _http(anvil_server, key) as http:
            answer = http.post("/create_session", json={"tags": []}, headers={"X-Idempotency-Key": "shared-key-1"})
            sessions[name] = answer.json()["session_id"]
            again = http.post("/create_session", json={"tags": []}, headers={"X-Idempotency-Key": "shared-key-1"})
            assert again.json()["session_id"] == sessions[name]
    assert sessions["ann"] != sessions["bob"]


def test_a_published_checkpoint_is_readable_by_others_but_not_theirs_to_change(anvil_server, worlds, tokenizer):
    ann, bob = worlds["ann"], worlds["bob"]
    path = ann.training.save_weights_for_sampler("published").result().path
    state = ann.training.save_state("published-state").result().path
    rest = tinker.RestClient(base_url=anvil_server.base_url, api_key=ann.key)
    rest.publish_checkpoint_from_tinker_path(path).result()
    rest.publish_checkpoint_from_tinker_path(state).result()
    sampler = bob.service.create_sampling_client(model_path=path).result()
    assert len(sampler.sample(types.ModelInput.from_ints([1, 2, 3]), num_samples=1,
                              sampling_params=types.SamplingParams(max_tokens=2)).result().sequences) == 1
    copy = bob.service.create_training_client_from_state(state).result()
    copy.forward([sft_datum([1, 2, 3, 4])], "cross_entropy").result()
    with _http(anvil_server, bob.key) as http:
        assert http.post("/weights_info", json={"tinker_path": path}).status_code == 200
        route = _checkpoint_route(path)
        for method, suffix, body in [("DELETE", "", None), ("DELETE", "/publish", None), ("PUT", "/ttl", {"ttl_seconds": 5})]:
            answer = http.request(method, route + suffix, json=body)
            assert answer.status_code in (403, 404), (method, suffix, answer.text)
    # still there, still published, for its owner and for others
    listed = [c.tinker_path for c in rest.list_checkpoints(ann.model_id).result().checkpoints]
    assert path in listed
    bob.service.create_sampling_client(model_path=path).result()
