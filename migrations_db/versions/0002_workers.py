"""Workers: each worker process's heartbeat and circuit breaker, for `status`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-01-12
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("worker_id", sa.Text(), nullable=False),
        sa.Column("started_at", UTC_TIME, nullable=False),
        sa.Column("heartbeat_at", UTC_TIME, nullable=False),
        sa.Column("alive_until", UTC_TIME, nullable=False),
        sa.Column("stopped_at", UTC_TIME, nullable=True),
        sa.Column("circuit", sa.String(16), nullable=False),
        sa.Column("circuit_reason", sa.Text(), nullable=True),
        sa.Column("steps_run", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("worker_id", name="pk_workers"),
    )
    op.create_index("ix_workers_heartbeat_at", "workers", ["heartbeat_at"])


def downgrade() -> None:
    op.drop_index("ix_workers_heartbeat_at", table_name="workers")
    op.drop_table("workers")
