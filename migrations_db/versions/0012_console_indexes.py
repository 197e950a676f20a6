"""Indexes for the console's filtered, keyset-paginated pages on a campaign of 100,000 parties.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their indexes instead of importing the models'.
INDEXES = (
    ("ix_migrations_batch_id_state_id", "migrations", ["batch_id", "state", "id"]),
    ("ix_migrations_batch_id_last_error_code_id", "migrations", ["batch_id", "last_error_code", "id"]),
    ("ix_migrations_batch_id_new_provider_id", "migrations", ["batch_id", "new_provider", "id"]),
    ("ix_migrations_batch_id_current_provider_id", "migrations", ["batch_id", "current_provider", "id"]),
    ("ix_migrations_state_id", "migrations", ["state", "id"]),
    ("ix_audit_events_kind_at", "audit_events", ["kind", "at"]),
    # status and the forecast: a batch's figures from the index alone, not its wide rows
    (
        "ix_migrations_batch_figures",
        "migrations",
        ["batch_id", "direction", "state", "paused", "started_at", "completed_at"],
    ),
    # the forecast's newest completions per direction, in completed_at order
    (
        "ix_migrations_batch_completions",
        "migrations",
        ["batch_id", "direction", "state", "completed_at", "started_at"],
    ),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
