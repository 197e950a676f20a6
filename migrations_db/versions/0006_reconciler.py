"""The reconciler: its findings per migration, and the lease that lets one worker run it at a time.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "findings",
        sa.Column("migration_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("first_seen_at", UTC_TIME, nullable=False),
        sa.Column("recorded_at", UTC_TIME, nullable=False),
        sa.Column("cleared_at", UTC_TIME, nullable=True),
        sa.ForeignKeyConstraint(["migration_id"], ["migrations.id"], name="fk_findings_migration_id_migrations"),
        sa.PrimaryKeyConstraint("migration_id", "kind", name="pk_findings"),
    )
    op.create_index("ix_findings_status", "findings", ["status"])
    op.create_table(
        "job_runs",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("owner", sa.Text(), nullable=True),
        sa.Column("lease_until", UTC_TIME, nullable=True),
        sa.Column("started_at", UTC_TIME, nullable=True),
        sa.Column("finished_at", UTC_TIME, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_job_runs"),
    )


def downgrade() -> None:
    op.drop_table("job_runs")
    op.drop_index("ix_findings_status", table_name="findings")
    op.drop_table("findings")
