"""``Store``: the one object the rest of the engine uses to reach the database.

Its methods are use cases (claim what is due, apply a step's outcome, import a batch,
verify the audit trail), each one short transaction; they take and return frozen records.
The work is done by the modules named after the concept: ``claims``, ``moves``,
``queries``, ``audit``, ``versioning``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime

from migration_engine.clock import Clock
from migration_engine.machine import Direction, State
from migration_engine.store import audit, claims, moves, queries, stats, versioning, workers
from migration_engine.store.database import Database
from migration_engine.store.records import (
    AuditEvent,
    BrokenLink,
    Change,
    MigrationRecord,
    NewMigration,
    WorkerStatus,
    WorkSummary,
)
from migration_engine.store.stats import BatchInfo, StatusFigures


class Store:
    """The migrations, their schedule and their audit trail, in SQLite or PostgreSQL.

    Thread-safe: worker threads share one ``Store``; each call checks out its own
    connection. ``url`` is a SQLAlchemy URL (``sqlite:///file.db``,
    ``postgresql+psycopg://user@host/db``; ``postgresql://`` means psycopg too).
    """

    def __init__(self, url: str, *, clock: Clock, pool_size: int = 16) -> None:
        self._db = Database(url, clock=clock, pool_size=pool_size)

    @property
    def clock(self) -> Clock:
        """The clock every timestamp the store writes comes from."""
        return self._db.clock

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    # ---- schema -------------------------------------------------------------------------

    def upgrade(self) -> None:
        """Create or upgrade the schema to the newest revision."""
        versioning.upgrade(self._db)

    def check_schema(self) -> None:
        """``SchemaOutOfDate`` unless the schema is at the newest revision."""
        versioning.check_schema(self._db)

    def close(self) -> None:
        """Close every pooled connection."""
        self._db.dispose()

    # ---- import -------------------------------------------------------------------------

    def ensure_batch(self, name: str, *, source: str | None = None) -> int:
        """The id of batch ``name``, created if new."""
        return moves.ensure_batch(self._db, name, source=source)

    def add_migrations(
        self,
        *,
        batch_name: str | None,
        items: Iterable[NewMigration],
        actor: str,
        chunk_size: int = 1000,
        batch_source: str | None = None,
    ) -> int:
        """Import all items or none (``ActiveMigrationExists`` names the parties); how many.

        The batch is created in the same transaction when new (``batch_source`` noted on it).
        """
        return moves.add_migrations(
            self._db,
            batch_name=batch_name,
            items=items,
            actor=actor,
            chunk_size=chunk_size,
            batch_source=batch_source,
        )

    def active_party_ids(self, party_ids: Iterable[str]) -> set[str]:
        """Which of these parties have an open (not completed, not cancelled) migration."""
        return queries.active_party_ids(self._db, party_ids)

    # ---- the worker's use cases ----------------------------------------------------------

    def claim_due(self, *, worker_id: str, limit: int, lease_s: float) -> list[MigrationRecord]:
        """Lease up to ``limit`` due migrations; each comes back with its bumped version."""
        return claims.claim_due(self._db, worker_id=worker_id, limit=limit, lease_s=lease_s)

    def renew_lease(self, *, migration_id: int, worker_id: str, version: int, lease_s: float) -> bool:
        """Extend a held lease; False when the worker no longer holds the row."""
        return claims.renew_lease(
            self._db, migration_id=migration_id, worker_id=worker_id, version=version, lease_s=lease_s
        )

    def apply(self, change: Change) -> MigrationRecord | None:
        """Compare-and-set with audit events; ``None`` when someone else moved the row first."""
        return moves.apply(self._db, change)

    def apply_many(self, changes: Sequence[Change]) -> list[MigrationRecord | None]:
        """``apply`` for each change, all in one transaction; a database error stores none."""
        return moves.apply_many(self._db, changes)

    def work_summary(self) -> WorkSummary:
        """Due now, in flight, scheduled later: when `run --until-idle` may stop."""
        return claims.work_summary(self._db)

    # ---- reading --------------------------------------------------------------------------

    def get(self, migration_id: int) -> MigrationRecord | None:
        return queries.get(self._db, migration_id)

    def find_party(self, party_id: str) -> list[MigrationRecord]:
        """Every migration of a party (canonical id), newest first."""
        return queries.find_party(self._db, party_id)

    def list_migrations(
        self, *, batch_name: str | None = None, states: Iterable[State] | None = None
    ) -> Iterator[MigrationRecord]:
        """Migrations in id order, read in pages."""
        return queries.list_migrations(self._db, batch_name=batch_name, states=states)

    def counts(self, *, batch_name: str | None = None) -> list[tuple[Direction, State, int]]:
        """Migrations per (direction, state)."""
        return queries.counts(self._db, batch_name=batch_name)

    def a_stored_key(self) -> str | None:
        """One stored key's ciphertext (an open migration's first), or None when none is stored."""
        return queries.a_stored_key(self._db)

    # ---- status and reports (stats.py) -----------------------------------------------------

    def batch_info(self, name: str) -> BatchInfo | None:
        """The batch called ``name``, or None when there is none."""
        return stats.batch_info(self._db, name)

    def status_figures(self, *, batch_name: str | None = None, since: datetime) -> StatusFigures:
        """Paused, completed since ``since``, errors by code, the oldest waiting: aggregates only."""
        return stats.status_figures(self._db, batch_name=batch_name, since=since)

    def error_event_counts(self, migration_ids: list[int]) -> dict[int, int]:
        """Failed tries (``error`` audit events) per migration; migrations without any left out."""
        return stats.error_event_counts(self._db, migration_ids)

    # ---- workers --------------------------------------------------------------------------

    def record_worker(self, status: WorkerStatus) -> None:
        """A worker's heartbeat and circuit state (upsert of its own row)."""
        workers.record(self._db, status)

    def workers(self, *, since: datetime) -> list[WorkerStatus]:
        """Workers heard of since ``since``, most recent heartbeat first."""
        return workers.recent(self._db, since=since)

    # ---- audit ----------------------------------------------------------------------------

    def events(self, migration_id: int) -> list[AuditEvent]:
        """A migration's audit events in order."""
        with self._db.read("read audit events") as conn:
            return audit.events_of(conn, migration_id)

    def verify_audit(self) -> list[BrokenLink]:
        """The first broken link of every migration whose hash chain does not verify."""
        return audit.verify(self._db)
