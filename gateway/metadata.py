"""Durable metadata in SQLite (WAL): sessions, training runs, checkpoints and sampling sessions.

Checkpoint files live on disk beside it; a checkpoint row is written only after its files are
complete, so every row listed names a checkpoint that loads.
"""

import json
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    session_id TEXT PRIMARY KEY, owner TEXT NOT NULL, created TEXT NOT NULL,
    last_heartbeat TEXT NOT NULL, tags TEXT NOT NULL, user_metadata TEXT NOT NULL,
    finished INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS training_runs (
    model_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, owner TEXT NOT NULL,
    base_model TEXT NOT NULL, lora TEXT NOT NULL, created TEXT NOT NULL,
    last_request TEXT NOT NULL, user_metadata TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    model_id TEXT NOT NULL, checkpoint_id TEXT NOT NULL, kind TEXT NOT NULL, folder TEXT NOT NULL,
    created TEXT NOT NULL, size_bytes INTEGER NOT NULL, public INTEGER NOT NULL DEFAULT 0,
    expires_at TEXT, user_metadata TEXT NOT NULL, PRIMARY KEY (model_id, checkpoint_id));
CREATE TABLE IF NOT EXISTS sampling_sessions (
    sampling_session_id TEXT PRIMARY KEY, session_id TEXT NOT NULL, owner TEXT NOT NULL,
    base_model TEXT NOT NULL, model_path TEXT, adapter_folder TEXT);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class TrainingRunRow:
    model_id: str
    session_id: str
    owner: str
    base_model: str
    lora: dict
    created: str
    last_request: str
    user_metadata: dict


@dataclass(frozen=True)
class CheckpointRow:
    model_id: str
    checkpoint_id: str  # "<kind>/<name>", kind in weights | sampler_weights
    kind: str
    folder: str
    created: str
    size_bytes: int
    public: bool
    expires_at: str | None
    user_metadata: dict

    @property
    def tinker_path(self) -> str:
        return f"tinker://{self.model_id}/{self.checkpoint_id}"


@dataclass(frozen=True)
class SamplingSessionRow:
    sampling_session_id: str
    session_id: str
    owner: str
    base_model: str
    model_path: str | None
    adapter_folder: str | None


class MetadataStore:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        # one connection shared by the event loop and the press thread, serialised by a lock
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(SCHEMA)

    def _execute(self, sql: str, params: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    # sessions
    def add_session(self, session_id: str, owner: str, tags: list[str], user_metadata: dict) -> None:
        stamp = now_iso()
        self._execute(
            "INSERT OR IGNORE INTO sessions VALUES (?, ?, ?, ?, ?, ?, 0)",
            (session_id, owner, stamp, stamp, json.dumps(tags), json.dumps(user_metadata)),
        )

    def session_owner(self, session_id: str) -> str | None:
        rows = self._execute("SELECT owner FROM sessions WHERE session_id = ?", (session_id,))
        return rows[0]["owner"] if rows else None

    def touch_session(self, session_id: str, finished: bool = False) -> None:
        self._execute(
            "UPDATE sessions SET last_heartbeat = ?, finished = max(finished, ?) WHERE session_id = ?",
            (now_iso(), int(finished), session_id),
        )

    def sessions_of(self, owner: str) -> list[str]:
        rows = self._execute("SELECT session_id FROM sessions WHERE owner = ? ORDER BY created", (owner,))
        return [r["session_id"] for r in rows]

    # training runs
    def add_training_run(self, run: TrainingRunRow) -> None:
        self._execute(
            "INSERT OR REPLACE INTO training_runs VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (run.model_id, run.session_id, run.owner, run.base_model, json.dumps(run.lora),
             run.created, run.last_request, json.dumps(run.user_metadata)),
        )

    def touch_training_run(self, model_id: str) -> None:
        self._execute("UPDATE training_runs SET last_request = ? WHERE model_id = ?", (now_iso(), model_id))

    def training_run(self, model_id: str) -> TrainingRunRow | None:
        rows = self._execute("SELECT * FROM training_runs WHERE model_id = ?", (model_id,))
        return _run(rows[0]) if rows else None

    def training_runs(self, owner: str, limit: int, offset: int) -> tuple[list[TrainingRunRow], int]:
        rows = self._execute(
            "SELECT * FROM training_runs WHERE owner = ? ORDER BY created DESC LIMIT ? OFFSET ?",
            (owner, limit, offset),
        )
        total = self._execute("SELECT count(*) AS n FROM training_runs WHERE owner = ?", (owner,))[0]["n"]
        return [_run(r) for r in rows], total

    def training_runs_of_session(self, session_id: str) -> list[str]:
        rows = self._execute("SELECT model_id FROM training_runs WHERE session_id = ? ORDER BY created", (session_id,))
        return [r["model_id"] for r in rows]

    # checkpoints
    def add_checkpoint(self, row: CheckpointRow) -> None:
        self._execute(
            "INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row.model_id, row.checkpoint_id, row.kind, row.folder, row.created, row.size_bytes,
             int(row.public), row.expires_at, json.dumps(row.user_metadata)),
        )

    def checkpoint(self, model_id: str, checkpoint_id: str) -> CheckpointRow | None:
        rows = self._execute(
            "SELECT * FROM checkpoints WHERE model_id = ? AND checkpoint_id = ?", (model_id, checkpoint_id)
        )
        return _checkpoint(rows[0]) if rows else None

    def checkpoints_of_run(self, model_id: str) -> list[CheckpointRow]:
        rows = self._execute("SELECT * FROM checkpoints WHERE model_id = ? ORDER BY created", (model_id,))
        return [_checkpoint(r) for r in rows]

    def checkpoints_of_owner(self, owner: str, limit: int, offset: int) -> tuple[list[CheckpointRow], int]:
        join = "FROM checkpoints c JOIN training_runs t ON c.model_id = t.model_id WHERE t.owner = ?"
        rows = self._execute(f"SELECT c.* {join} ORDER BY c.created DESC LIMIT ? OFFSET ?", (owner, limit, offset))
        total = self._execute(f"SELECT count(*) AS n {join}", (owner,))[0]["n"]
        return [_checkpoint(r) for r in rows], total

    def checkpoints_readable_by(self, owner: str, kind: str, limit: int) -> list[tuple[CheckpointRow, str, str]]:
        """(checkpoint, its base model, its owner) for the `kind` checkpoints of `owner` and the
        published ones of everybody, newest first."""
        rows = self._execute(
            "SELECT c.*, t.base_model AS run_base_model, t.owner AS run_owner FROM checkpoints c "
            "JOIN training_runs t ON c.model_id = t.model_id "
            "WHERE c.kind = ? AND (t.owner = ? OR c.public = 1) ORDER BY c.created DESC LIMIT ?",
            (kind, owner, limit),
        )
        listed = []
        for row in rows:
            values = dict(row)
            base_model, run_owner = values.pop("run_base_model"), values.pop("run_owner")
            listed.append((_checkpoint(values), base_model, run_owner))
        return listed

    def delete_checkpoint(self, model_id: str, checkpoint_id: str, folder: str | None = None) -> None:
        """With `folder`: only while the row still names that version (a save may have replaced it)."""
        if folder is None:
            self._execute("DELETE FROM checkpoints WHERE model_id = ? AND checkpoint_id = ?", (model_id, checkpoint_id))
            return
        self._execute(
            "DELETE FROM checkpoints WHERE model_id = ? AND checkpoint_id = ? AND folder = ?",
            (model_id, checkpoint_id, folder),
        )

    def expired_checkpoints(self, now: str) -> list[CheckpointRow]:
        """Checkpoints whose expires_at (ISO 8601, UTC) is at or before `now`."""
        rows = self._execute("SELECT * FROM checkpoints WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        return [_checkpoint(r) for r in rows]

    def checkpoint_folders(self) -> list[str]:
        """The folder of every checkpoint row: the versions on disk that are checkpoints."""
        return [r["folder"] for r in self._execute("SELECT folder FROM checkpoints")]

    def set_checkpoint_public(self, model_id: str, checkpoint_id: str, public: bool) -> None:
        self._execute(
            "UPDATE checkpoints SET public = ? WHERE model_id = ? AND checkpoint_id = ?",
            (int(public), model_id, checkpoint_id),
        )

    def set_checkpoint_expiry(self, model_id: str, checkpoint_id: str, expires_at: str | None) -> None:
        self._execute(
            "UPDATE checkpoints SET expires_at = ? WHERE model_id = ? AND checkpoint_id = ?",
            (expires_at, model_id, checkpoint_id),
        )

    # sampling sessions
    def add_sampling_session(self, row: SamplingSessionRow) -> None:
        self._execute(
            "INSERT OR IGNORE INTO sampling_sessions VALUES (?, ?, ?, ?, ?, ?)",
            (row.sampling_session_id, row.session_id, row.owner, row.base_model, row.model_path, row.adapter_folder),
        )

    def sampling_session(self, sampling_session_id: str) -> SamplingSessionRow | None:
        rows = self._execute("SELECT * FROM sampling_sessions WHERE sampling_session_id = ?", (sampling_session_id,))
        return SamplingSessionRow(**dict(rows[0])) if rows else None

    def sampling_sessions_of_session(self, session_id: str) -> list[str]:
        rows = self._execute("SELECT sampling_session_id FROM sampling_sessions WHERE session_id = ?", (session_id,))
        return [r["sampling_session_id"] for r in rows]


def _run(row: sqlite3.Row) -> TrainingRunRow:
    values = dict(row)
    values["lora"] = json.loads(values["lora"])
    values["user_metadata"] = json.loads(values["user_metadata"])
    return TrainingRunRow(**values)


def _checkpoint(row: sqlite3.Row | dict) -> CheckpointRow:
    values = dict(row)
    values["public"] = bool(values["public"])
    values["user_metadata"] = json.loads(values["user_metadata"])
    return CheckpointRow(**values)
