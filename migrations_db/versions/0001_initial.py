"""The initial schema: batches, migrations, audit_events.

Revision ID: 0001
Revises:
Create Date: 2026-01-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)
OPEN_STATE = "state NOT IN ('completed', 'cancelled')"


def upgrade() -> None:
    op.create_table(
        "batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("source", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_batches"),
        sa.UniqueConstraint("name", name="uq_batches_name"),
    )
    op.create_table(
        "migrations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=True),
        sa.Column("party_id", sa.Text(), nullable=False),
        sa.Column("direction", sa.String(16), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("profile", sa.Text(), nullable=True),
        sa.Column("name", sa.Text(), nullable=True),
        sa.Column("new_provider", sa.Text(), nullable=True),
        sa.Column("key_ciphertext", sa.Text(), nullable=True),
        sa.Column("key_issued_at", UTC_TIME, nullable=True),
        sa.Column("next_run_at", UTC_TIME, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.Text(), nullable=True),
        sa.Column("lease_until", UTC_TIME, nullable=True),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_code", sa.Text(), nullable=True),
        sa.Column("failed_state", sa.String(32), nullable=True),
        sa.Column("deadline_at", UTC_TIME, nullable=True),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.Column("completed_at", UTC_TIME, nullable=True),
        sa.Column("event_seq", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["batch_id"], ["batches.id"], name="fk_migrations_batch_id_batches"),
        sa.PrimaryKeyConstraint("id", name="pk_migrations"),
    )
    # At most one open migration per party, whatever the direction: the import's check is
    # the friendly message, this index is the guard.
    op.create_index(
        "uq_migrations_open_party",
        "migrations",
        ["party_id"],
        unique=True,
        postgresql_where=sa.text(OPEN_STATE),
        sqlite_where=sa.text(OPEN_STATE),
    )
    # The claim's index: scheduled, unpaused rows in due order.
    op.create_index(
        "ix_migrations_due",
        "migrations",
        ["next_run_at", "id"],
        postgresql_where=sa.text("next_run_at IS NOT NULL AND paused = false"),
        sqlite_where=sa.text("next_run_at IS NOT NULL AND paused = 0"),
    )
    op.create_index("ix_migrations_party_id", "migrations", ["party_id"])
    op.create_index("ix_migrations_batch_id_state", "migrations", ["batch_id", "state"])
    op.create_index("ix_migrations_state", "migrations", ["state"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("migration_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UTC_TIME, nullable=False),
        sa.Column("actor", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=True),
        sa.Column("to_state", sa.String(32), nullable=True),
        sa.Column("trigger", sa.String(32), nullable=True),
        sa.Column("http_method", sa.String(16), nullable=True),
        sa.Column("http_path", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.Column("request_id", sa.Text(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(["migration_id"], ["migrations.id"], name="fk_audit_events_migration_id_migrations"),
        sa.PrimaryKeyConstraint("id", name="pk_audit_events"),
        sa.UniqueConstraint("migration_id", "seq", name="uq_audit_events_migration_id_seq"),
    )


def downgrade() -> None:
    op.drop_table("audit_events")
    op.drop_index("ix_migrations_state", table_name="migrations")
    op.drop_index("ix_migrations_batch_id_state", table_name="migrations")
    op.drop_index("ix_migrations_party_id", table_name="migrations")
    op.drop_index("ix_migrations_due", table_name="migrations")
    op.drop_index("uq_migrations_open_party", table_name="migrations")
    op.drop_table("migrations")
    op.drop_table("batches")
