"""The store: migrations, their schedule and their audit trail. The only SQLAlchemy user.

facade.py      Store, the use cases the engine calls
records.py     the frozen records in and out (no SQLAlchemy)
schema.py      the tables (Alembic's revisions in migrations_db/ must match them)
database.py    engine, connections, transactions, error translation
claims.py      claiming due migrations with a lease; the work summary
moves.py       the import and the compare-and-set that moves a migration
queries.py     reading migrations and counts
stats.py       status figures and report lookups, as aggregate queries
audit.py       the audit events' hash chains and their verification
workers.py     worker processes' heartbeats and circuit breakers
versioning.py  Alembic upgrade and the schema version check
"""

from __future__ import annotations

from migration_engine.store.facade import Store
from migration_engine.store.records import (
    EVENT_KINDS,
    UNCHANGED,
    AuditEvent,
    BrokenLink,
    Change,
    EventIn,
    MigrationRecord,
    NewMigration,
    WorkerStatus,
    WorkSummary,
)
from migration_engine.store.stats import BatchInfo, OldestWaiting, StatusFigures

__all__ = [
    "EVENT_KINDS",
    "UNCHANGED",
    "AuditEvent",
    "BatchInfo",
    "BrokenLink",
    "Change",
    "EventIn",
    "MigrationRecord",
    "NewMigration",
    "OldestWaiting",
    "StatusFigures",
    "Store",
    "WorkSummary",
    "WorkerStatus",
]
