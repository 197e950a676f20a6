"""The chart's hourly summary: a batch's state moves counted per hour, kept by a trigger.

``state_hours`` holds, per batch, clock hour (UTC, text ``YYYY-MM-DD HH``) and move (from
state, '' for a migration's first state; to state), how many audit events made that move. On
SQLite a trigger on ``audit_events`` adds each state move (kinds created/transition/operator
whose states differ) in the transaction that appends it, so the summary never lags the audit
trail; the existing events are counted once here. The console's chart (store/console_queries.py)
reads a window of hours from it instead of every event of the window. On PostgreSQL the table
stays empty and the chart counts the window's events (see upgrade()).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: the trigger's text is spelled out here, not imported.
SQLITE_TRIGGER = """
CREATE TRIGGER audit_events_state_hours AFTER INSERT ON audit_events
FOR EACH ROW WHEN NEW.kind IN ('created', 'transition', 'operator') AND NEW.to_state IS NOT NULL
    AND (NEW.from_state IS NULL OR NEW.from_state != NEW.to_state)
BEGIN
    INSERT INTO state_hours (batch_id, hour, from_state, to_state, n)
    SELECT batch_id, substr(NEW.at, 1, 13), coalesce(NEW.from_state, ''), NEW.to_state, 1
    FROM migrations WHERE id = NEW.migration_id AND batch_id IS NOT NULL
    ON CONFLICT (batch_id, hour, from_state, to_state) DO UPDATE SET n = n + 1;
END
"""

# The existing events, counted once.
BACKFILL = """
INSERT INTO state_hours (batch_id, hour, from_state, to_state, n)
SELECT m.batch_id, substr(e.at, 1, 13), coalesce(e.from_state, ''), e.to_state, count(*)
FROM audit_events e JOIN migrations m ON m.id = e.migration_id
WHERE m.batch_id IS NOT NULL AND e.kind IN ('created', 'transition', 'operator') AND e.to_state IS NOT NULL
  AND (e.from_state IS NULL OR e.from_state != e.to_state)
GROUP BY m.batch_id, substr(e.at, 1, 13), coalesce(e.from_state, ''), e.to_state
"""


def upgrade() -> None:
    op.create_table(
        "state_hours",
        sa.Column("batch_id", sa.Integer, nullable=False),
        sa.Column("hour", sa.String(13), nullable=False),
        sa.Column("from_state", sa.String(32), nullable=False),
        sa.Column("to_state", sa.String(32), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("batch_id", "hour", "from_state", "to_state"),
    )
    # SQLite only: one writer at a time, so the trigger's upserts cannot deadlock. On PostgreSQL
    # several workers commit groups of moves at once; their upserts of the same summary rows in
    # different orders could deadlock and abort a group commit, so the chart counts the window's
    # events there instead and the table stays empty (it exists on both, one schema).
    if not _pg():
        op.execute(SQLITE_TRIGGER)
        op.execute(BACKFILL)


def downgrade() -> None:
    if not _pg():
        op.execute("DROP TRIGGER IF EXISTS audit_events_state_hours")
    op.drop_table("state_hours")


def _pg() -> bool:
    return op.get_bind().dialect.name == "postgresql"
