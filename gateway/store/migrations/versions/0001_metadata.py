"""The metadata of the first releases: sessions, training runs, checkpoints, sampling sessions.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String, primary_key=True),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.Column("last_heartbeat", sa.String, nullable=False),
        sa.Column("tags", sa.JSON, nullable=False),
        sa.Column("user_metadata", sa.JSON, nullable=False),
        sa.Column("finished", sa.Boolean, nullable=False, server_default=sa.false()),
    )
    op.create_table(
        "training_runs",
        sa.Column("model_id", sa.String, primary_key=True),
        sa.Column("session_id", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("base_model", sa.String, nullable=False),
        sa.Column("lora", sa.JSON, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.Column("last_request", sa.String, nullable=False),
        sa.Column("user_metadata", sa.JSON, nullable=False),
    )
    op.create_table(
        "checkpoints",
        sa.Column("model_id", sa.String, primary_key=True),
        sa.Column("checkpoint_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("folder", sa.String, nullable=False),
        sa.Column("created", sa.String, nullable=False),
        sa.Column("size_bytes", sa.BigInteger, nullable=False),
        sa.Column("public", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("expires_at", sa.String),
        sa.Column("user_metadata", sa.JSON, nullable=False),
    )
    op.create_table(
        "sampling_sessions",
        sa.Column("sampling_session_id", sa.String, primary_key=True),
        sa.Column("session_id", sa.String, nullable=False),
        sa.Column("owner", sa.String, nullable=False),
        sa.Column("base_model", sa.String, nullable=False),
        sa.Column("model_path", sa.String),
        sa.Column("adapter_folder", sa.String),
    )


def downgrade() -> None:
    for table in ("sampling_sessions", "checkpoints", "training_runs", "sessions"):
        op.drop_table(table)
