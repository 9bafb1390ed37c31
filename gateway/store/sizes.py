"""How big the store is, for `GET /metrics`: the database itself and the checkpoints it lists."""

from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from gateway.store.tables import checkpoints, sessions, training_runs


@dataclass(frozen=True)
class StoreSizes:
    database_bytes: int
    checkpoint_bytes: int
    checkpoints: int
    training_runs: int
    sessions: int


def store_sizes(engine: sa.Engine) -> StoreSizes:
    """Blocks on the database: call it from a worker thread."""
    with engine.connect() as db:
        checkpoint_bytes, checkpoint_count = db.execute(
            sa.select(sa.func.coalesce(sa.func.sum(checkpoints.c.size_bytes), 0), sa.func.count())
        ).one()
        runs = db.scalar(sa.select(sa.func.count()).select_from(training_runs))
        session_count = db.scalar(sa.select(sa.func.count()).select_from(sessions))
        database = _database_bytes(engine, db)
    return StoreSizes(int(database), int(checkpoint_bytes), int(checkpoint_count), int(runs), int(session_count))


def _database_bytes(engine: sa.Engine, db: sa.Connection) -> int:
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        # the write-ahead log holds commits not yet folded into the main file
        return sum(p.stat().st_size for p in (path, path.with_name(path.name + "-wal")) if p.is_file())
    if engine.dialect.name == "postgresql":
        return int(db.scalar(sa.text("SELECT pg_database_size(current_database())")))
    return 0
