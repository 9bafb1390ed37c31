"""Per-step metrics of training runs and their step counts, which the console plots.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "run_metrics",
        sa.Column("model_id", sa.String, primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.Float),
    )
    op.create_table(
        "run_steps",
        sa.Column("model_id", sa.String, primary_key=True),
        sa.Column("steps", sa.Integer, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_steps")
    op.drop_table("run_metrics")
