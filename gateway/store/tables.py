"""The schema as SQLAlchemy Core tables. Changing it needs a migration in migrations/versions/."""

import sqlalchemy as sa

metadata = sa.MetaData()

sessions = sa.Table(
    "sessions", metadata,
    sa.Column("session_id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False, index=True),
    sa.Column("created", sa.String, nullable=False),
    sa.Column("last_heartbeat", sa.String, nullable=False),
    sa.Column("tags", sa.JSON, nullable=False),
    sa.Column("user_metadata", sa.JSON, nullable=False),
    sa.Column("finished", sa.Boolean, nullable=False, server_default=sa.false()),
)

training_runs = sa.Table(
    "training_runs", metadata,
    sa.Column("model_id", sa.String, primary_key=True),
    sa.Column("session_id", sa.String, nullable=False),
    sa.Column("owner", sa.String, nullable=False, index=True),
    sa.Column("base_model", sa.String, nullable=False),
    sa.Column("lora", sa.JSON, nullable=False),
    sa.Column("created", sa.String, nullable=False),
    sa.Column("last_request", sa.String, nullable=False),
    sa.Column("user_metadata", sa.JSON, nullable=False),
)

checkpoints = sa.Table(
    "checkpoints", metadata,
    sa.Column("model_id", sa.String, primary_key=True),
    sa.Column("checkpoint_id", sa.String, primary_key=True),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("folder", sa.String, nullable=False),
    sa.Column("created", sa.String, nullable=False, index=True),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("expires_at", sa.String),
    sa.Column("user_metadata", sa.JSON, nullable=False),
)

sampling_sessions = sa.Table(
    "sampling_sessions", metadata,
    sa.Column("sampling_session_id", sa.String, primary_key=True),
    sa.Column("session_id", sa.String, nullable=False, index=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("base_model", sa.String, nullable=False),
    sa.Column("model_path", sa.String),
    sa.Column("adapter_folder", sa.String),
)

# X-Idempotency-Key of create_session, per user: a retried create_session gets the same session
idempotency_keys = sa.Table(
    "idempotency_keys", metadata,
    sa.Column("owner", sa.String, primary_key=True),
    sa.Column("key", sa.String, primary_key=True),
    sa.Column("session_id", sa.String, sa.ForeignKey("sessions.session_id", ondelete="CASCADE"), nullable=False),
    sa.Column("created", sa.String, nullable=False),
)

futures = sa.Table(
    "futures", metadata,
    sa.Column("request_id", sa.String, primary_key=True),
    sa.Column("owner", sa.String, nullable=False),
    sa.Column("request_type", sa.String, nullable=False),
    sa.Column("created", sa.String, nullable=False),
    sa.Column("finished_at", sa.String, index=True),
    sa.Column("content_type", sa.String),
    sa.Column("body", sa.LargeBinary),
)

users = sa.Table(
    "users", metadata,
    sa.Column("user_id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=False, unique=True),
    sa.Column("created", sa.String, nullable=False),
)

api_keys = sa.Table(
    "api_keys", metadata,
    sa.Column("key_id", sa.String, primary_key=True),
    sa.Column("user_id", sa.String, sa.ForeignKey("users.user_id"), nullable=False),
    sa.Column("key_hash", sa.String, nullable=False, unique=True),
    sa.Column("prefix", sa.String, nullable=False),
    sa.Column("created", sa.String, nullable=False),
    sa.Column("revoked_at", sa.String),
)

# what each step of a training run reported (its forward_backward and optim_step metrics), for
# the console's curves; bounded per run by gateway/training_curves.py
run_metrics = sa.Table(
    "run_metrics", metadata,
    sa.Column("model_id", sa.String, primary_key=True),
    sa.Column("step", sa.Integer, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Float),  # NULL: the result reported NaN or an infinity
)

# optim_steps done per training run (a step may report no metric at all)
run_steps = sa.Table(
    "run_steps", metadata,
    sa.Column("model_id", sa.String, primary_key=True),
    sa.Column("steps", sa.Integer, nullable=False),
)
