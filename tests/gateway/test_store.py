"""The store on each backend (SQLite and a real PostgreSQL): the migrations build the schema from
nothing, and every method keeps, replaces, scopes and lists rows as the routes rely on."""

import dataclasses
import sqlite3
import threading

import pytest
import sqlalchemy as sa

from gateway.store import (
    ApiKeys,
    CheckpointRow,
    FutureResults,
    FutureRow,
    MetadataStore,
    SamplingSessionRow,
    TrainingRunRow,
    open_engine,
)
from gateway.store.api_keys import key_hash

ALL_TABLES = {
    "sessions", "training_runs", "checkpoints", "sampling_sessions",
    "idempotency_keys", "futures", "users", "api_keys", "run_metrics", "run_steps", "alembic_version",
}


@pytest.fixture
def engine(store_url):
    engine = open_engine(store_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine):
    return MetadataStore(engine)


def _run(model_id: str, owner: str, created: str, session_id: str = "sess-1") -> TrainingRunRow:
    return TrainingRunRow(model_id, session_id, owner, "anvil/tiny-qwen3", {"rank": 4}, created, created, {"k": "v"})


def _checkpoint(model_id: str, name: str, created: str, kind: str = "weights", size: int = 10) -> CheckpointRow:
    return CheckpointRow(model_id, f"{kind}/{name}", kind, f"/ckpt/{model_id}/{name}", created, size, False, None, {})


def test_migrations_build_the_schema_from_nothing_and_reopen_as_is(store_url):
    engine = open_engine(store_url)
    assert set(sa.inspect(engine).get_table_names()) == ALL_TABLES
    with engine.connect() as db:
        assert db.scalar(sa.text("SELECT version_num FROM alembic_version")) == "0003"
    MetadataStore(engine).add_session("sess-kept", "alice", [], {})
    engine.dispose()
    reopened = open_engine(store_url)
    assert MetadataStore(reopened).sessions_of("alice") == ["sess-kept"]
    reopened.dispose()


def test_a_database_of_the_first_releases_is_adopted_with_its_rows(tmp_path):
    path = tmp_path / "metadata.sqlite"
    legacy = sqlite3.connect(path)
    legacy.executescript(
        """
        CREATE TABLE sessions (session_id TEXT PRIMARY KEY, owner TEXT NOT NULL, created TEXT NOT NULL,
            last_heartbeat TEXT NOT NULL, tags TEXT NOT NULL, user_metadata TEXT NOT NULL,
            finished INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE training_runs (model_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, owner TEXT NOT NULL,
            base_model TEXT NOT NULL, lora TEXT NOT NULL, created TEXT NOT NULL,
            last_request TEXT NOT NULL, user_metadata TEXT NOT NULL);
        CREATE TABLE checkpoints (model_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL, kind TEXT NOT NULL,
            folder TEXT NOT NULL, created TEXT NOT NULL, size_bytes INTEGER NOT NULL,
            public INTEGER NOT NULL DEFAULT 0, expires_at TEXT, user_metadata TEXT NOT NULL,
            PRIMARY KEY (model_id, checkpoint_id));
        CREATE TABLE sampling_sessions (sampling_session_id TEXT PRIMARY KEY, session_id TEXT NOT NULL,
            owner TEXT NOT NULL, base_model TEXT NOT NULL, model_path TEXT, adapter_folder TEXT);
        INSERT INTO sessions VALUES ('sess-old', 'alice', '2026-01-01', '2026-01-01', '["t"]', '{}', 1);
        INSERT INTO training_runs VALUES ('sess-old:train:0', 'sess-old', 'alice', 'anvil/tiny-qwen3',
            '{"rank": 8}', '2026-01-01', '2026-01-02', '{"a": "b"}');
        INSERT INTO checkpoints VALUES ('sess-old:train:0', 'weights/w', 'weights', '/c/w', '2026-01-03', 5, 1,
            NULL, '{}');
        """
    )
    legacy.close()
    engine = open_engine(f"sqlite:///{path}")
    store = MetadataStore(engine)
    assert store.sessions_of("alice") == ["sess-old"]
    assert store.training_run("sess-old:train:0").lora == {"rank": 8}
    assert store.checkpoint("sess-old:train:0", "weights/w").public is True
    assert set(sa.inspect(engine).get_table_names()) == ALL_TABLES
    engine.dispose()


def test_sessions_owners_heartbeats_and_finishing(store, engine):
    assert store.add_session("sess-a", "alice", ["x"], {"m": 1}) == "sess-a"
    store.add_session("sess-b", "bob", [], {})
    assert store.session_owner("sess-a") == "alice"
    assert store.session_owner("sess-missing") is None
    assert store.sessions_of("alice") == ["sess-a"]
    store.touch_session("sess-a", finished=True)
    store.touch_session("sess-a")  # a heartbeat after finishing does not reopen it
    with engine.connect() as db:
        finished = db.scalar(sa.text("SELECT finished FROM sessions WHERE session_id = 'sess-a'"))
    assert bool(finished) is True


def test_idempotency_keys_are_per_user(store):
    first = store.add_session("sess-1", "alice", [], {}, idempotency_key="retry-me")
    again = store.add_session("sess-2", "alice", [], {}, idempotency_key="retry-me")
    other_user = store.add_session("sess-3", "bob", [], {}, idempotency_key="retry-me")
    assert (first, again, other_user) == ("sess-1", "sess-1", "sess-3")
    assert store.sessions_of("alice") == ["sess-1"]
    assert store.sessions_of("bob") == ["sess-3"]


def test_concurrent_retries_of_one_idempotency_key_make_one_session(store):
    answers = []
    barrier = threading.Barrier(6)

    def create(i: int) -> None:
        barrier.wait()
        answers.append(store.add_session(f"sess-{i}", "alice", [], {}, idempotency_key="same"))

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(answers)) == 1
    assert store.sessions_of("alice") == [answers[0]]


def test_training_runs_replace_list_newest_first_and_count(store):
    for i in range(5):
        store.add_training_run(_run(f"m{i}", "alice", f"2026-01-0{i + 1}"))
    store.add_training_run(_run("b0", "bob", "2026-01-09"))
    store.add_training_run(dataclasses.replace(_run("m0", "alice", "2026-01-01"), base_model="other"))
    assert store.training_run("m0").base_model == "other"
    page, total = store.training_runs("alice", limit=2, offset=1)
    assert [r.model_id for r in page] == ["m3", "m2"]
    assert total == 5
    assert store.training_runs_of_session("sess-1") == ["m0", "m1", "m2", "m3", "m4", "b0"]
    before = store.training_run("m1").last_request
    store.touch_training_run("m1")
    assert store.training_run("m1").last_request > before
    assert store.training_run("nope") is None


def test_checkpoints_replace_scope_publish_expire_and_delete(store):
    store.add_training_run(_run("ma", "alice", "2026-01-01"))
    store.add_training_run(_run("mb", "bob", "2026-01-01"))
    store.add_checkpoint(_checkpoint("ma", "one", "2026-02-01"))
    store.add_checkpoint(_checkpoint("ma", "s", "2026-02-02", kind="sampler_weights"))
    store.add_checkpoint(_checkpoint("mb", "s", "2026-02-03", kind="sampler_weights"))
    store.set_checkpoint_public("ma", "weights/one", True)
    # saving under the same name again replaces the row, published flag included
    store.add_checkpoint(_checkpoint("ma", "one", "2026-02-04", size=99))
    replaced = store.checkpoint("ma", "weights/one")
    assert (replaced.size_bytes, replaced.public, replaced.created) == (99, False, "2026-02-04")
    assert replaced.tinker_path == "tinker://ma/weights/one"

    rows, total = store.checkpoints_of_owner("alice", limit=10, offset=0)
    assert ([r.checkpoint_id for r in rows], total) == (["weights/one", "sampler_weights/s"], 2)
    assert [r.checkpoint_id for r in store.checkpoints_of_run("ma")] == ["sampler_weights/s", "weights/one"]

    assert [(c.model_id, owner) for c, _, owner in store.checkpoints_readable_by("alice", "sampler_weights", 10)] == [("ma", "alice")]
    store.set_checkpoint_public("mb", "sampler_weights/s", True)
    readable = store.checkpoints_readable_by("alice", "sampler_weights", 10)
    assert [(c.model_id, base, owner) for c, base, owner in readable] == [
        ("mb", "anvil/tiny-qwen3", "bob"), ("ma", "anvil/tiny-qwen3", "alice"),
    ]

    store.set_checkpoint_expiry("ma", "weights/one", "2026-03-01T00:00:00.000000+00:00")
    assert store.checkpoint("ma", "weights/one").expires_at == "2026-03-01T00:00:00.000000+00:00"
    store.delete_checkpoint("ma", "weights/one")
    assert store.checkpoint("ma", "weights/one") is None


def test_sampling_sessions_are_written_once(store):
    row = SamplingSessionRow("sess-1:sample:0", "sess-1", "alice", "anvil/tiny-qwen3", None, "/f/1")
    store.add_sampling_session(row)
    store.add_sampling_session(SamplingSessionRow("sess-1:sample:0", "sess-1", "bob", "x", None, None))
    assert store.sampling_session("sess-1:sample:0") == row
    assert store.sampling_sessions_of_session("sess-1") == ["sess-1:sample:0"]
    assert store.sampling_session("nope") is None


def test_future_results_pending_finished_failed_and_swept(engine):
    results = FutureResults(engine)
    results.write([FutureRow("req-1", "alice", "OptimStep", "2026-01-01"), FutureRow("req-2", "bob", "Sample", "2026-01-01")], [])
    body = bytes(range(256)) * 4  # binary bodies (protobuf) survive as they are
    results.write([], [FutureRow("req-1", "alice", "OptimStep", "", "2026-01-02", "application/x-protobuf", body)])
    assert results.get("req-1") == FutureRow("req-1", "alice", "OptimStep", "2026-01-01", "2026-01-02", "application/x-protobuf", body)
    assert results.get("req-2").finished_at is None

    assert results.fail_pending("2026-01-05", "application/json", b'{"error": "restarted"}') == 1
    assert results.get("req-2").body == b'{"error": "restarted"}'
    assert results.get("req-1").body == body  # a finished result is not touched

    assert results.delete_finished_before("2026-01-03") == 1
    assert results.get("req-1") is None
    assert results.get("req-2") is not None


def test_api_keys_map_to_stable_users_and_are_stored_only_as_hashes(engine):
    keys = ApiKeys(engine)
    first, first_row = keys.create("alice")
    second, second_row = keys.create("alice")
    bob, bob_row = keys.create("bob")
    assert first.startswith("tml-") and len(first) > 40 and len({first, second, bob}) == 3
    assert first_row.user_id == second_row.user_id != bob_row.user_id
    assert keys.key_of(first).user_id == first_row.user_id
    assert keys.key_of("tml-never-made") is None
    assert keys.active_keys() == 3

    revoked = keys.revoke(first_row.key_id)
    assert revoked.revoked_at is not None
    assert keys.revoke(first_row.key_id).revoked_at == revoked.revoked_at  # the first revocation stands
    assert keys.revoke("key-unknown") is None
    assert keys.key_of(first).revoked_at is not None
    assert keys.key_of(second).revoked_at is None
    assert keys.active_keys() == 2
    assert [(r.key_id, r.user_name) for r in keys.keys()] == [
        (first_row.key_id, "alice"), (second_row.key_id, "alice"), (bob_row.key_id, "bob"),
    ]

    with engine.connect() as db:
        stored = [tuple(map(str, row)) for row in db.execute(sa.text("SELECT * FROM api_keys"))]
    dump = repr(stored)
    assert key_hash(first) in dump
    assert first not in dump and second not in dump and bob not in dump
