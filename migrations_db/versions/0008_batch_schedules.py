"""Batch schedules: each batch's windows, time zone, blackouts, waves, in-flight cap and priority.

The schedule is one JSON text on the batch row (``migration_engine.schedule`` reads it); the
priority is also a column of its own so that claiming can order by it in SQL. Who set the
schedule and when are noted on the row; the change itself is audited on the batch's open
migrations' chains (docs/operations.md, "Campaign pacing").

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMNs (SQLite takes a NOT NULL column with a constant default): batch mode
    # would copy the table, and `batches` is referenced by the migrations' foreign key.
    op.add_column("batches", sa.Column("schedule", sa.Text(), nullable=True))
    op.add_column("batches", sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")))
    op.add_column("batches", sa.Column("schedule_set_at", UTC_TIME, nullable=True))
    op.add_column("batches", sa.Column("schedule_set_by", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("batches") as batch:
        batch.drop_column("schedule_set_by")
        batch.drop_column("schedule_set_at")
        batch.drop_column("priority")
        batch.drop_column("schedule")
