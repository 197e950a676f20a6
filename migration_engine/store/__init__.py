"""The store: migrations, their schedule and their audit trail. The only SQLAlchemy user.

facade.py      Store, the use cases the engine calls
records.py     the frozen records in and out (no SQLAlchemy)
schema.py      the tables (Alembic's revisions in migrations_db/ must match them)
database.py    engine, connections, transactions, error translation
claims.py      claiming due migrations with a lease; the work summary
moves.py       the import and the compare-and-set that moves a migration
requests.py    operator requests on a row in flight; a stale step's calls appended anyway
queries.py     reading migrations and counts
console_queries.py  the console's keyset pages, filters, queue and chart
stats.py       status figures and report lookups, as aggregate queries
audit.py       the audit events' keyed hash chains
audit_verify.py  checking the chains, and the rows against them (and an anchor)
audit_anchor.py  anchors: the chain heads at one moment, HMAC'd
audit_export.py  the events with their party, direction and batch, for an auditor
workers.py     worker processes' heartbeats and circuit breakers
findings.py    the reconciler's findings: what it watches, found, recorded
schedules.py   batch schedules: stored on the batch, audited on its open migrations
pacing.py      a batch's starts per hour and day, in flight; taking a start slot; holding the rest
jobs.py        periodic jobs' lease rows (one reconciler run at a time)
budgets.py     the budgets per dependency every worker shares: a reservation of slots at a time
alerts.py      alerts: the cursor over the audit events, digests waiting, the outbox and its deliveries
versioning.py  Alembic upgrade and the schema version check
"""

from __future__ import annotations

from migration_engine.store.console_queries import (
    ATTENTION_STATES,
    BatchCounts,
    MigrationFilter,
    Page,
    StateHours,
)
from migration_engine.store.facade import Store
from migration_engine.store.pacing import Buckets, StartCaps, StartCounts
from migration_engine.store.records import (
    EVENT_KINDS,
    UNCHANGED,
    AuditAnchor,
    AuditEvent,
    BrokenLink,
    ChainHead,
    Change,
    EventIn,
    MigrationRecord,
    NewMigration,
    PendingRequest,
    WorkerStatus,
    WorkSummary,
)
from migration_engine.store.schedules import ScheduleChange, ScheduledBatch, ScheduleToSet
from migration_engine.store.stats import BatchInfo, OldestWaiting, StatusFigures

__all__ = [
    "ATTENTION_STATES",
    "EVENT_KINDS",
    "UNCHANGED",
    "AuditAnchor",
    "AuditEvent",
    "BatchCounts",
    "BatchInfo",
    "BrokenLink",
    "Buckets",
    "ChainHead",
    "Change",
    "EventIn",
    "MigrationFilter",
    "MigrationRecord",
    "NewMigration",
    "OldestWaiting",
    "Page",
    "PendingRequest",
    "ScheduleChange",
    "ScheduleToSet",
    "ScheduledBatch",
    "StartCaps",
    "StartCounts",
    "StateHours",
    "StatusFigures",
    "Store",
    "WorkSummary",
    "WorkerStatus",
]
