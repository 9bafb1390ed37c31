"""Users and keys: `anvil keys create|list|revoke` on the server's store; keys required when the
server says so (unknown or revoked keys get 401), open mode on loopback; rotating a key keeps the
user's data; every lookup of a future or an idempotency key is scoped to its user."""

import os
import subprocess
import sys

import pytest
import uvicorn
from fastapi.testclient import TestClient

import gateway.app
from gateway import cli
from gateway.futures import Payload
from gateway.service import Settings, open_user_id


def _anvil_keys(data_dir, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", *args, "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=120, env={**os.environ, "ANVIL_DATABASE_URL": ""},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _create_key(data_dir, user: str) -> tuple[str, str]:
    """(key, key id) of a new key of `user`."""
    key = _anvil_keys(data_dir, "create", "--user", user).strip()
    listed = [line.split() for line in _anvil_keys(data_dir, "list").splitlines()[1:]]
    key_id = next(row[0] for row in listed if key.startswith(row[3].rstrip("…")) and row[1] == user)
    return key, key_id


def _sessions(client: TestClient, key: str):
    return client.get("/api/v1/sessions", headers={"X-API-Key": key})


def _new_session(client: TestClient, key: str, idempotency_key: str | None = None) -> str:
    headers = {"X-API-Key": key} | ({"X-Idempotency-Key": idempotency_key} if idempotency_key else {})
    answer = client.post("/api/v1/create_session", json={"tags": [], "sdk_version": "0.38.0"}, headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()["session_id"]


def test_keys_cli_create_list_revoke_and_rotation_keep_the_users_data(tmp_path):
    first, first_id = _create_key(tmp_path, "alice")
    bob, _ = _create_key(tmp_path, "bob")
    assert first.startswith("tml-") and len(first) >= 40
    with TestClient(gateway.app.create_app(Settings(data_dir=tmp_path, require_keys=True))) as client:
        session = _new_session(client, first)
        assert _sessions(client, bob).json() == {"sessions": []}

        unknown = _sessions(client, "tml-made-up-by-a-stranger")
        assert unknown.status_code == 401 and "unknown API key" in unknown.json()["detail"]

        # rotation: a second key for alice, then the first one revoked
        second, _ = _create_key(tmp_path, "alice")
        assert _sessions(client, second).json() == {"sessions": [session]}
        assert f"{first_id} of user alice revoked at" in _anvil_keys(tmp_path, "revoke", first_id)
        refused = _sessions(client, first)
        assert refused.status_code == 401 and first_id in refused.json()["detail"]
        assert _sessions(client, second).json() == {"sessions": [session]}
        # the OpenAI routes take the same keys
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {first}"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": f"Bearer {second}"}).status_code == 200

    listing = _anvil_keys(tmp_path, "list").splitlines()
    assert listing[0].split() == ["KEY_ID", "USER", "USER_ID", "PREFIX", "CREATED", "REVOKED"]
    rows = {line.split()[0]: line.split() for line in listing[1:]}
    assert len(rows) == 3 and rows[first_id][1] == "alice" and rows[first_id][-1] != "-"
    assert sum(row[-1] == "-" for row in rows.values()) == 2
    assert first not in "\n".join(listing)  # only the first characters are shown


def test_revoking_an_unknown_key_id_fails_clearly(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "keys", "revoke", "key-nope", "--data-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 1 and "no key 'key-nope'" in done.stderr


def test_open_mode_takes_any_well_formed_key_but_not_a_revoked_one(tmp_path):
    made, made_id = _create_key(tmp_path, "carol")
    with TestClient(gateway.app.create_app(Settings(data_dir=tmp_path))) as client:
        for malformed in ("tml-", "abc", "tml- spaced", "tml-\ttab"):
            answer = _sessions(client, malformed)
            assert answer.status_code == 401, malformed
            assert "tml-" in answer.json()["detail"]
        session = _new_session(client, "tml-anyone")
        assert _sessions(client, "tml-anyone").json() == {"sessions": [session]}
        assert _sessions(client, "tml-someone-else").json() == {"sessions": []}
        # a made key is its user's in open mode too, and refused once revoked
        carols = _new_session(client, made)
        assert _sessions(client, made).json() == {"sessions": [carols]}
        _anvil_keys(tmp_path, "revoke", made_id)
        assert _sessions(client, made).status_code == 401


def test_idempotency_keys_and_futures_are_scoped_to_their_user(tmp_path):
    with TestClient(gateway.app.create_app(Settings(data_dir=tmp_path, long_poll_s=0.2))) as client:
        alice, bob = "tml-alice-key", "tml-bob-key"
        first = _new_session(client, alice, idempotency_key="retry-1")
        assert _new_session(client, alice, idempotency_key="retry-1") == first
        bobs = _new_session(client, bob, idempotency_key="retry-1")
        assert bobs != first
        assert _sessions(client, bob).json() == {"sessions": [bobs]}

        service = client.app.state.service
        request_id = client.portal.call(_create_future, service, open_user_id(alice))
        service.futures.resolve(request_id, Payload.json({"metrics": {"done": 1.0}}))
        retrieve = lambda key, rid: client.post("/api/v1/retrieve_future", json={"request_id": rid}, headers={"X-API-Key": key})
        assert retrieve(alice, request_id).json() == {"metrics": {"done": 1.0}}
        theirs, unknown = retrieve(bob, request_id), retrieve(bob, "req-unknown")
        assert (theirs.status_code, unknown.status_code) == (404, 404)
        assert theirs.json()["detail"] == unknown.json()["detail"].replace("req-unknown", request_id)


async def _create_future(service, owner: str) -> str:
    return service.futures.create("OptimStep", owner)


@pytest.fixture
def served(monkeypatch):
    """`anvil serve` up to the point it would listen: the settings it would serve with."""
    captured = {}
    monkeypatch.setattr(gateway.app, "create_app", lambda settings: captured.setdefault("settings", settings))
    monkeypatch.setattr(uvicorn, "run", lambda app, **kwargs: captured.setdefault("run", kwargs))
    precision = os.environ.get("ANVIL_PRECISION", "fp32")

    def serve(data_dir, *flags: str) -> Settings:
        captured.clear()
        cli.main(["serve", "--data-dir", str(data_dir), "--precision", precision, *flags])
        return captured["settings"]

    return serve


def test_keys_are_required_beyond_loopback_unless_the_operator_opens_the_server(served, tmp_path, capsys):
    assert served(tmp_path).require_keys is False
    assert served(tmp_path, "--host", "::1").require_keys is False
    assert served(tmp_path, "--require-keys").require_keys is True
    assert served(tmp_path, "--host", "0.0.0.0", "--open").require_keys is False
    with pytest.raises(SystemExit) as refused:
        served(tmp_path, "--host", "0.0.0.0")
    assert refused.value.code == 2
    message = capsys.readouterr().err
    assert "--host 0.0.0.0 is not a loopback address" in message and "anvil keys create" in message and "--open" in message
    with pytest.raises(SystemExit):
        served(tmp_path, "--open", "--require-keys")

    _create_key(tmp_path, "dave")
    settings = served(tmp_path, "--host", "0.0.0.0", "--database-url", f"sqlite:///{tmp_path / 'metadata.sqlite'}")
    assert settings.require_keys is True and settings.database_url == f"sqlite:///{tmp_path / 'metadata.sqlite'}"
