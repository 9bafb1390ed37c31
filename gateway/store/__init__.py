"""The durable store: SQLAlchemy on SQLite (the data dir's metadata.sqlite) or any database URL,
its schema kept by the Alembic migrations in migrations/."""

from gateway.store.api_keys import ApiKeys
from gateway.store.engine import database_url, open_engine
from gateway.store.future_results import FutureResults
from gateway.store.metadata import MetadataStore
from gateway.store.off_loop import OffLoop, store_executor
from gateway.store.run_curves import RunCurves, StepPoints
from gateway.store.rows import ApiKeyRow, CheckpointRow, FutureRow, SamplingSessionRow, TrainingRunRow, now_iso

__all__ = [
    "ApiKeyRow", "ApiKeys", "CheckpointRow", "FutureResults", "FutureRow", "MetadataStore", "OffLoop", "RunCurves",
    "SamplingSessionRow", "StepPoints", "TrainingRunRow", "database_url", "now_iso", "open_engine", "store_executor",
]
