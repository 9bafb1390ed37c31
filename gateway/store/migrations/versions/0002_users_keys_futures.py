"""Users and their API keys, per-user idempotency keys, finished futures; indexes on owners.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.String, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("created", sa.String, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String, primary_key=True),
        sa.Column("user_id", sa.String, sa.ForeignKey("users.user_id"), nullable=False),
        sa.Column("key_hash", sa.String, nullable=False, unique=True),
        sa.Column("prefix", sa.String, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.Column("revoked_at", sa.String),
    )
    op.create_table(
        "idempotency_keys",
        sa.Column("owner", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column(
            "session_id", sa.String, sa.ForeignKey("sessions.session_id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("created", sa.String, nullable=False),
    )
    op.create_table(
        "futures",
        sa.Column("request_id", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("request_type", sa.String, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.Column("finished_at", sa.String),
        sa.Column("content_type", sa.String),
        sa.Column("body", sa.LargeBinary),
    )
    op.create_index("ix_futures_finished_at", "futures", ["finished_at"])
    op.create_index("ix_sessions_owner", "sessions", ["owner"])
    op.create_index("ix_training_runs_owner", "training_runs", ["owner"])
    op.create_index("ix_checkpoints_created", "checkpoints", ["created"])
    op.create_index("ix_sampling_sessions_session_id", "sampling_sessions", ["session_id"])


def downgrade() -> None:
    for index, table in (
        ("ix_sampling_sessions_session_id", "sampling_sessions"),
        ("ix_checkpoints_created", "checkpoints"),
        ("ix_training_runs_owner", "training_runs"),
        ("ix_sessions_owner", "sessions"),
        ("ix_futures_finished_at", "futures"),
    ):
        op.drop_index(index, table)
    for table in ("futures", "idempotency_keys", "api_keys", "users"):
        op.drop_table(table)
