"""Operator actions on a migration whose step is in flight: deferred until the step ends.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)
COLUMNS = ("pending_action", "pending_actor", "pending_at", "pending_detail")


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("pending_action", sa.String(16), nullable=True))
        batch.add_column(sa.Column("pending_actor", sa.Text(), nullable=True))
        batch.add_column(sa.Column("pending_at", UTC_TIME, nullable=True))
        batch.add_column(sa.Column("pending_detail", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        for name in reversed(COLUMNS):
            batch.drop_column(name)
