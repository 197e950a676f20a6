"""Alerts: the durable outbox of webhook and e-mail alerts, and the cursor over the audit events they come from.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Revisions are frozen history: they spell out their types instead of importing the models'.
UTC_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "alert_cursor",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", UTC_TIME, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_alert_cursor"),
    )
    op.create_table(
        "alert_messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uid", sa.String(32), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("digest_key", sa.Text(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_alert_messages"),
        sa.UniqueConstraint("uid", name="uq_alert_messages_uid"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC_TIME, nullable=False),
        sa.Column("occurred_at", UTC_TIME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("digest_key", sa.Text(), nullable=False),
        sa.Column("batch_name", sa.Text(), nullable=True),
        sa.Column("party_id", sa.Text(), nullable=True),
        sa.Column("migration_id", sa.Integer(), nullable=True),
        sa.Column("event_id", sa.BigInteger(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["alert_messages.id"], name="fk_alerts_message_id_alert_messages"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_alerts"),
    )
    op.create_index("ix_alerts_message_id", "alerts", ["message_id"])
    op.create_table(
        "alert_deliveries",
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("destination", sa.String(64), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_try_at", UTC_TIME, nullable=True),
        sa.Column("delivered_at", UTC_TIME, nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["message_id"], ["alert_messages.id"], name="fk_alert_deliveries_message_id_alert_messages"
        ),
        sa.PrimaryKeyConstraint("message_id", "destination", name="pk_alert_deliveries"),
    )
    op.create_index("ix_alert_deliveries_next_try_at", "alert_deliveries", ["next_try_at"])
    # Alerts start from the upgrade: the history already in the trail is not alerted on.
    op.execute(
        "INSERT INTO alert_cursor (name, position, updated_at) "
        "SELECT 'audit_events', COALESCE(MAX(id), 0), CURRENT_TIMESTAMP FROM audit_events"
    )


def downgrade() -> None:
    op.drop_index("ix_alert_deliveries_next_try_at", table_name="alert_deliveries")
    op.drop_table("alert_deliveries")
    op.drop_index("ix_alerts_message_id", table_name="alerts")
    op.drop_table("alerts")
    op.drop_table("alert_messages")
    op.drop_table("alert_cursor")
