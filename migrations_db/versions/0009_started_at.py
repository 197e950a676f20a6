"""When each migration started (its first mutating call), for the wave caps and the forecast.

``migrations.started_at``, with the indexes pacing reads: a batch's starts by time, its due
rows in order (the claim's priority passes), its migrations in flight (partial).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types and predicates.
UTC_TIME = sa.DateTime(timezone=True)
OPEN = "state NOT IN ('completed', 'cancelled')"
IN_FLIGHT = f"started_at IS NOT NULL AND {OPEN}"
DUE = {"postgresql": "next_run_at IS NOT NULL AND paused = false", "sqlite": "next_run_at IS NOT NULL AND paused = 0"}


def upgrade() -> None:
    with op.batch_alter_table("migrations") as batch:
        batch.add_column(sa.Column("started_at", UTC_TIME, nullable=True))
    op.create_index("ix_migrations_batch_id_started_at", "migrations", ["batch_id", "started_at"])
    op.create_index(
        "ix_migrations_batch_due",
        "migrations",
        ["batch_id", "next_run_at", "id"],
        postgresql_where=sa.text(DUE["postgresql"]),
        sqlite_where=sa.text(DUE["sqlite"]),
    )
    op.create_index(
        "ix_migrations_in_flight",
        "migrations",
        ["batch_id"],
        postgresql_where=sa.text(IN_FLIGHT),
        sqlite_where=sa.text(IN_FLIGHT),
    )


def downgrade() -> None:
    op.drop_index("ix_migrations_in_flight", table_name="migrations")
    op.drop_index("ix_migrations_batch_due", table_name="migrations")
    op.drop_index("ix_migrations_batch_id_started_at", table_name="migrations")
    with op.batch_alter_table("migrations") as batch:
        batch.drop_column("started_at")
