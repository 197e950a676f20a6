"""The tables, as SQLAlchemy Core metadata. Alembic's revisions must produce exactly this.

A change here needs a new revision in ``migrations_db/versions``; a test compares the two on
SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Double,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

# The one rule both dialects enforce: at most one open migration per party, whatever the
# direction. The literal list must match machine.TERMINAL_STATES (a unit test checks it).
OPEN_STATE_PREDICATE = "state NOT IN ('completed', 'cancelled')"
DUE_INDEX_PREDICATE = {
    "postgresql": "next_run_at IS NOT NULL AND paused = false",
    "sqlite": "next_run_at IS NOT NULL AND paused = 0",
}


def _to_utc(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"naive datetime {value!r}: the store takes timezone-aware UTC only")
    return value if value.tzinfo is UTC else value.astimezone(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out, on every dialect.

    PostgreSQL stores ``timestamptz``. SQLite has no time zone: the value is stored as UTC
    text ``YYYY-MM-DD HH:MM:SS.ffffff`` (always with microseconds, so text order is time
    order; the same format as SQLAlchemy's own) and read back as UTC. A naive datetime is a
    bug in the caller, so it is refused rather than guessed at.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else _to_utc(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    # SQLite: one direct conversion each way instead of two chained processors; an import
    # of 100k migrations converts about a million of these.
    def bind_processor(self, dialect: Dialect) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)

        def to_text(value: Any) -> str | None:
            if value is None:
                return None
            return _to_utc(value).replace(tzinfo=None).isoformat(" ", "microseconds")

        return to_text

    def result_processor(self, dialect: Dialect, coltype: object) -> Callable[[Any], Any] | None:
        if dialect.name != "sqlite":
            return super().result_processor(dialect, coltype)

        def from_text(value: Any) -> datetime | None:
            if value is None:
                return None
            parsed = value if isinstance(value, datetime) else datetime.fromisoformat(value)
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)

        return from_text


batches = Table(
    "batches",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("source", Text, nullable=True),
    # The batch's schedule (store/schedules.py): canonical JSON of schedule.BatchSchedule, NULL
    # when unscheduled; its priority also as a column, for claiming to order by in SQL.
    Column("schedule", Text, nullable=True),
    Column("priority", Integer, nullable=False, server_default=text("0")),
    Column("schedule_set_at", UtcDateTime, nullable=True),
    Column("schedule_set_by", Text, nullable=True),
    UniqueConstraint("name"),
)

migrations = Table(
    "migrations",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("batch_id", Integer, ForeignKey("batches.id"), nullable=True),
    Column("party_id", Text, nullable=False),
    Column("direction", String(16), nullable=False),
    Column("state", String(32), nullable=False),
    Column("version", Integer, nullable=False),
    Column("profile", Text, nullable=True),
    Column("name", Text, nullable=True),
    Column("new_provider", Text, nullable=True),
    Column("current_provider", Text, nullable=True),
    Column("key_ciphertext", Text, nullable=True),
    Column("key_issued_at", UtcDateTime, nullable=True),
    Column("next_run_at", UtcDateTime, nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("lease_owner", Text, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("paused", Boolean, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("last_error_code", Text, nullable=True),
    Column("failed_state", String(32), nullable=True),
    Column("deadline_at", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime, nullable=True),
    # The seq of the migration's last audit event: the chain's head, kept on the row so that
    # `audit verify` also detects a deleted last event, and `apply` knows the next seq.
    Column("event_seq", Integer, nullable=False),
    # An operator's action asked for while a step was in flight: the worker applies it after
    # the step's outcome, in the same transaction (docs/state-machines.md). NULL: none pending.
    Column("pending_action", String(16), nullable=True),
    Column("pending_actor", Text, nullable=True),
    Column("pending_at", UtcDateTime, nullable=True),
    Column("pending_detail", Text, nullable=True),  # JSON; a key set's key as ciphertext only
    # When the migration took its start slot, right before its first mutating call (the inbound
    # migration PUT, the outbound prepareToMigrate): the batch's wave caps and in-flight cap
    # count these (store/pacing.py), and the forecast measures the pace with them.
    Column("started_at", UtcDateTime, nullable=True),
)

Index(
    "uq_migrations_open_party",
    migrations.c.party_id,
    unique=True,
    postgresql_where=text(OPEN_STATE_PREDICATE),
    sqlite_where=text(OPEN_STATE_PREDICATE),
)
# Claiming scans this in order; paused and unscheduled (waiting, terminal) rows are not in it,
# so pausing a big batch does not slow the claim down. The predicates are spelled the way
# SQLAlchemy renders the claim's conditions, which SQLite needs to match them to the index.
Index(
    "ix_migrations_due",
    migrations.c.next_run_at,
    migrations.c.id,
    postgresql_where=text(DUE_INDEX_PREDICATE["postgresql"]),
    sqlite_where=text(DUE_INDEX_PREDICATE["sqlite"]),
)
Index("ix_migrations_party_id", migrations.c.party_id)
# Pacing (store/pacing.py): the starts of a batch in the current hour and day are a range of
# this index; the claim's priority passes scan one batch's due rows in order with the second;
# a batch's migrations in flight (started, not finished) are the third, partial one.
Index("ix_migrations_batch_id_started_at", migrations.c.batch_id, migrations.c.started_at)
Index(
    "ix_migrations_batch_due",
    migrations.c.batch_id,
    migrations.c.next_run_at,
    migrations.c.id,
    postgresql_where=text(DUE_INDEX_PREDICATE["postgresql"]),
    sqlite_where=text(DUE_INDEX_PREDICATE["sqlite"]),
)
IN_FLIGHT_PREDICATE = f"started_at IS NOT NULL AND {OPEN_STATE_PREDICATE}"
Index(
    "ix_migrations_in_flight",
    migrations.c.batch_id,
    postgresql_where=text(IN_FLIGHT_PREDICATE),
    sqlite_where=text(IN_FLIGHT_PREDICATE),
)
Index("ix_migrations_batch_id_state", migrations.c.batch_id, migrations.c.state)
Index("ix_migrations_state", migrations.c.state)

audit_events = Table(
    "audit_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("migration_id", Integer, ForeignKey("migrations.id"), nullable=False),
    Column("seq", Integer, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("actor", Text, nullable=False),
    Column("kind", String(16), nullable=False),
    Column("from_state", String(32), nullable=True),
    Column("to_state", String(32), nullable=True),
    Column("trigger", String(32), nullable=True),
    Column("http_method", String(16), nullable=True),
    Column("http_path", Text, nullable=True),
    Column("http_status", Integer, nullable=True),
    Column("duration_ms", Float, nullable=True),
    Column("request_id", Text, nullable=True),
    Column("detail", Text, nullable=False),  # canonical JSON text, hashed as stored
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("migration_id", "seq"),
)

# The console (store/console_queries.py, revision 0012): each filter of a batch's table is one
# range of an index ending in ``id``, so a keyset page (``id > :after ORDER BY id LIMIT n``)
# reads only its rows; the needs-attention queue the same over ``(state, id)``; the chart of a
# batch's states over time reads the state moves of a window of hours over ``(kind, at)``.
Index("ix_migrations_batch_id_state_id", migrations.c.batch_id, migrations.c.state, migrations.c.id)
Index(
    "ix_migrations_batch_id_last_error_code_id", migrations.c.batch_id, migrations.c.last_error_code, migrations.c.id
)
Index("ix_migrations_batch_id_new_provider_id", migrations.c.batch_id, migrations.c.new_provider, migrations.c.id)
Index(
    "ix_migrations_batch_id_current_provider_id", migrations.c.batch_id, migrations.c.current_provider, migrations.c.id
)
Index("ix_migrations_state_id", migrations.c.state, migrations.c.id)
Index("ix_audit_events_kind_at", audit_events.c.kind, audit_events.c.at)
# status and the forecast (store/stats.py, store/forecast_inputs.py) read a batch's figures from
# the first index alone (a batch's rows are wide); the forecast's newest completions per
# direction are a range of the second, in completed_at order.
Index(
    "ix_migrations_batch_figures",
    migrations.c.batch_id,
    migrations.c.direction,
    migrations.c.state,
    migrations.c.paused,
    migrations.c.started_at,
    migrations.c.completed_at,
)
Index(
    "ix_migrations_batch_completions",
    migrations.c.batch_id,
    migrations.c.direction,
    migrations.c.state,
    migrations.c.completed_at,
    migrations.c.started_at,
)

# The console's chart (revision 0013): a batch's state moves counted per clock hour (UTC, text
# ``YYYY-MM-DD HH``) and move (``from_state`` '' for a migration's first state). A trigger on
# audit_events (spelled out in revision 0013, per dialect) adds every state move in the
# transaction that appends its event, so the summary is exactly the audit trail's moves.
state_hours = Table(
    "state_hours",
    metadata,
    Column("batch_id", Integer, nullable=False),
    Column("hour", String(13), nullable=False),
    Column("from_state", String(32), nullable=False),
    Column("to_state", String(32), nullable=False),
    Column("n", Integer, nullable=False),
    PrimaryKeyConstraint("batch_id", "hour", "from_state", "to_state"),
)

# One row per worker process (its id says host and pid): the heartbeat and circuit breaker
# that `status` shows. Written only by the worker it names; no foreign keys, no history.
workers = Table(
    "workers",
    metadata,
    Column("worker_id", Text, primary_key=True),
    Column("started_at", UtcDateTime, nullable=False),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("alive_until", UtcDateTime, nullable=False),
    Column("stopped_at", UtcDateTime, nullable=True),
    Column("circuit", String(16), nullable=False),
    Column("circuit_reason", Text, nullable=True),
    Column("steps_run", Integer, nullable=False),
)
Index("ix_workers_heartbeat_at", workers.c.heartbeat_at)

# The key-encryption keys (store/vault.py): never a key, only how to derive it again (KDF, salt,
# scrypt's cost) and its check value, which every command that encrypts or decrypts migration
# keys checks the configured key against first. One row is ``current``; during `keys rotate`
# one is ``next``; the keys rotated away stay as ``retired`` history.
key_vault = Table(
    "key_vault",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("kdf", String(16), nullable=False),
    Column("salt", Text, nullable=False),  # base64
    Column("scrypt_n", Integer, nullable=True),
    Column("scrypt_r", Integer, nullable=True),
    Column("scrypt_p", Integer, nullable=True),
    Column("check_value", String(64), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)
KEY_VAULT_LIVE_PREDICATE = "status <> 'retired'"
Index(
    "uq_key_vault_status",
    key_vault.c.status,
    unique=True,
    postgresql_where=text(KEY_VAULT_LIVE_PREDICATE),
    sqlite_where=text(KEY_VAULT_LIVE_PREDICATE),
)

# The reconciler's findings (engine/reconciler.py): one row per migration and kind of finding,
# its current state; each change of it is also a ``finding`` audit event on the migration's
# chain, written in the same transaction. ``signature`` is what was seen, to tell a changed
# finding from a repeat; ``recorded_at`` when it was last written to the audit trail.
findings = Table(
    "findings",
    metadata,
    Column("migration_id", Integer, ForeignKey("migrations.id"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("status", String(16), nullable=False),  # open | cleared
    Column("signature", Text, nullable=False),
    Column("summary", Text, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("recorded_at", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("migration_id", "kind"),
)
Index("ix_findings_status", findings.c.status)

# Periodic jobs shared by the workers of one database (the reconciler): who runs it now (a
# lease, so one worker at a time) and when it last ran (so the fleet runs it once per interval).
job_runs = Table(
    "job_runs",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("owner", Text, nullable=True),
    Column("lease_until", UtcDateTime, nullable=True),
    Column("started_at", UtcDateTime, nullable=True),
    Column("finished_at", UtcDateTime, nullable=True),
)

# The budgets per dependency that every worker of the database shares (store/budgets.py): a
# virtual schedule per budget, ``next_free_s`` the time its next free slot starts (seconds since
# the epoch, on the database's clock). A worker reserves a block of slots with one atomic
# upsert; ``rate_per_s`` is the rate of the last reservation, ``reserved`` the slots ever taken.
budgets = Table(
    "budgets",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("next_free_s", Double, nullable=False),
    Column("rate_per_s", Double, nullable=False),
    Column("reserved", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Alerts (store/alerts.py, engine/alerts.py). ``alert_cursor``: how far the producer has read
# the audit events (one row, ``audit_events``). ``alerts``: one per thing to tell (a party in
# needs_attention, a batch completed, ...), waiting (``message_id`` NULL) until its digest
# window closes. ``alert_messages``: the outbox, one message per digest, its body fixed when it
# is made, so every retry sends the same bytes; ``uid`` is the idempotency id a receiver dedupes
# by. ``alert_deliveries``: each message's state per destination (a webhook by the hash of its
# URL, or ``email``); ``next_try_at`` NULL once delivered.
alert_cursor = Table(
    "alert_cursor",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

alert_messages = Table(
    "alert_messages",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("uid", String(32), nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("digest_key", Text, nullable=False),
    Column("count", Integer, nullable=False),
    Column("payload", Text, nullable=False),  # canonical JSON, sent as is
    UniqueConstraint("uid"),
)

alerts = Table(
    "alerts",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("digest_key", Text, nullable=False),
    Column("batch_name", Text, nullable=True),
    Column("party_id", Text, nullable=True),
    Column("migration_id", Integer, nullable=True),
    Column("event_id", BigInteger, nullable=True),
    Column("summary", Text, nullable=False),
    Column("message_id", Integer, ForeignKey("alert_messages.id"), nullable=True),
)
Index("ix_alerts_message_id", alerts.c.message_id)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("message_id", Integer, ForeignKey("alert_messages.id"), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("next_try_at", UtcDateTime, nullable=True),
    Column("delivered_at", UtcDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    PrimaryKeyConstraint("message_id", "destination"),
)
Index("ix_alert_deliveries_next_try_at", alert_deliveries.c.next_try_at)
