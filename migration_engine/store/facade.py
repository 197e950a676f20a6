"""``Store``: the one object the rest of the engine uses to reach the database.

Its methods are use cases (claim what is due, apply a step's outcome, import a batch,
verify the audit trail), each one short transaction; they take and return frozen records.
The work is done by the modules named after the concept: ``claims``, ``moves``,
``queries``, ``audit``, ``versioning``.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from migration_engine.clock import Clock
from migration_engine.keys import DEFAULT_SCRYPT, KEY_SETTING, KeyRecord, KeyVault, ScryptParams
from migration_engine.machine import Direction, State
from migration_engine.schedule import BatchSchedule
from migration_engine.store import (
    audit,
    audit_anchor,
    audit_export,
    audit_verify,
    budgets,
    claims,
    console_queries,
    findings,
    forecast_inputs,
    jobs,
    moves,
    pacing,
    queries,
    requests,
    schedules,
    stats,
    vault,
    versioning,
    workers,
)
from migration_engine.store.alerts import AlertTables
from migration_engine.store.budgets import BudgetRow
from migration_engine.store.database import Database
from migration_engine.store.db_clock import server_time
from migration_engine.store.findings import FindingsSummary, FindingState, FindingWrite
from migration_engine.store.forecast_inputs import ForecastInputs
from migration_engine.store.jobs import JobRun
from migration_engine.store.records import (
    AuditAnchor,
    AuditEvent,
    BrokenLink,
    Change,
    EventIn,
    MigrationRecord,
    NewMigration,
    PendingRequest,
    WorkerStatus,
    WorkSummary,
)
from migration_engine.store.schedules import ScheduleChange, ScheduledBatch
from migration_engine.store.stats import BatchInfo, StatusFigures


class Store:
    """The migrations, their schedule and their audit trail, in SQLite or PostgreSQL.

    Thread-safe: worker threads share one ``Store``; each call checks out its own
    connection. ``url`` is a SQLAlchemy URL (``sqlite:///file.db``,
    ``postgresql+psycopg://user@host/db``; ``postgresql://`` means psycopg too). ``audit_key``
    (setting ``audit.key``) keys the audit trail's hashes: without it the store reads, but
    refuses (``ConfigError``, exit 2) to write an audit event or to verify the trail.
    """

    def __init__(self, url: str, *, clock: Clock, pool_size: int = 16, audit_key: str | None = None) -> None:
        self._db = Database(url, clock=clock, pool_size=pool_size, audit_key=audit_key)

    @property
    def clock(self) -> Clock:
        """The clock every timestamp the store writes comes from."""
        return self._db.clock

    def server_time(self) -> datetime:
        """The database server's current time (PostgreSQL only: a ``DatabaseClock`` reads it)."""
        return server_time(self._db)

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
        seal: Callable[[int, str], str | None] | None = None,
        schedule: schedules.ScheduleToSet | None = None,
    ) -> int:
        """Import all items or none (``ActiveMigrationExists`` names the parties); how many.

        The batch is created in the same transaction when new (``batch_source`` noted on it).
        ``seal(migration_id, party_id)``, when given, is each row's key ciphertext, made once
        the row's id is allocated (a key is bound to its migration id). ``schedule``, when
        given, is set on the batch in the same transaction (``schedule.change`` says what it did),
        so no migration of the batch can start before its schedule holds.
        """
        then = None
        if schedule is not None:
            if batch_name is None:
                raise ValueError("a schedule needs a batch")
            to_set, name = schedule, batch_name

            def then(conn: Any, now: datetime) -> None:
                to_set.change = schedules.set_schedule_in(
                    self._db, conn, name, to_set.schedule, actor=to_set.actor, now=now
                )

        return moves.add_migrations(
            self._db,
            batch_name=batch_name,
            items=items,
            actor=actor,
            chunk_size=chunk_size,
            batch_source=batch_source,
            seal=seal,
            then=then,
        )

    def active_party_ids(self, party_ids: Iterable[str]) -> set[str]:
        """Which of these parties have an open (not completed, not cancelled) migration."""
        return queries.active_party_ids(self._db, party_ids)

    # ---- the worker's use cases ----------------------------------------------------------

    def claim_due(
        self,
        *,
        worker_id: str,
        limit: int,
        lease_s: float,
        first: Sequence[Sequence[int]] = (),
        last: Sequence[Sequence[int]] = (),
    ) -> list[MigrationRecord]:
        """Lease up to ``limit`` due migrations; each comes back with its bumped version. The
        batches of ``first`` (groups, highest priority first) go before the rest, ``last`` after."""
        return claims.claim_due(
            self._db, worker_id=worker_id, limit=limit, lease_s=lease_s, first=first, last=last
        )

    # ---- pacing (pacing.py) ------------------------------------------------------------------

    def start_counts(
        self, buckets: Mapping[int, pacing.Buckets], in_flight_of: Collection[int] = ()
    ) -> dict[int, pacing.StartCounts]:
        """Batch id -> its starts this hour and day, and (for ``in_flight_of``) in flight: one read."""
        return pacing.start_counts(self._db, buckets, in_flight_of)

    def take_start(
        self, *, migration_id: int, batch_id: int, version: int, worker_id: str, caps: pacing.StartCaps, now: datetime
    ) -> tuple[bool, pacing.StartCounts]:
        """Count the batch's starts under its lock and, with room under every cap, mark the claimed
        migration started (``started_at = now``); (taken, the counts before)."""
        return pacing.take_start(
            self._db,
            migration_id=migration_id,
            batch_id=batch_id,
            version=version,
            worker_id=worker_id,
            caps=caps,
            now=now,
        )

    def hold_waiting(self, *, batch_id: int, until: datetime, starting: pacing.StartingStates) -> int:
        """Postpone the batch's due, unstarted, unleased migrations in a starting state to ``until``."""
        return pacing.hold_waiting(self._db, batch_id=batch_id, until=until, starting=starting)

    def renew_lease(self, *, migration_id: int, worker_id: str, version: int, lease_s: float) -> bool:
        """Extend a held lease; False when the worker no longer holds the row."""
        return claims.renew_lease(
            self._db, migration_id=migration_id, worker_id=worker_id, version=version, lease_s=lease_s
        )

    def apply(self, change: Change) -> MigrationRecord | None:
        """Compare-and-set with audit events; ``None`` when someone else moved the row first."""
        return moves.apply(self._db, change)

    def apply_many(
        self, changes: Sequence[Change], *, follow_up: moves.FollowUp | None = None
    ) -> list[MigrationRecord | None]:
        """``apply`` for each change, all in one transaction; a database error stores none.

        A failed compare-and-set still appends the change's ``if_stale`` events; with
        ``follow_up``, a pending operator request on a moved row is applied right after it."""
        return moves.apply_many(self._db, changes, follow_up=follow_up)

    def request_action(
        self, *, migration_id: int, version: int, request: PendingRequest, event: EventIn
    ) -> MigrationRecord | None:
        """Record an operator's request on a migration in flight (no version bump) with its audit
        event; None when the row is no longer in flight at ``version`` or has a request already."""
        return requests.request_action(
            self._db, migration_id=migration_id, version=version, request=request, event=event
        )

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

    # ---- the console's reads (console_queries.py) ---------------------------------------------

    def console_batches(self) -> list[console_queries.BatchCounts]:
        """Every batch, newest first, with its migrations per state."""
        return console_queries.batches_with_counts(self._db)

    def console_batch(self, name: str) -> console_queries.BatchCounts | None:
        """Batch ``name`` with its migrations per state; None when there is none."""
        return console_queries.batch_counts(self._db, name)

    def console_batch_page(
        self,
        batch_id: int,
        *,
        flt: console_queries.MigrationFilter | None = None,
        after_id: int = 0,
        limit: int = 50,
    ) -> console_queries.Page:
        """A batch's migrations in id order after ``after_id``, filtered (keyset pages)."""
        return console_queries.batch_page(self._db, batch_id, flt=flt, after_id=after_id, limit=limit)

    def console_attention_page(
        self,
        *,
        states: Sequence[State] = console_queries.ATTENTION_STATES,
        batch_id: int | None = None,
        after_id: int = 0,
        limit: int = 50,
    ) -> console_queries.Page:
        """The needs-attention queue in id order after ``after_id`` (keyset pages)."""
        return console_queries.attention_page(
            self._db, states=states, batch_id=batch_id, after_id=after_id, limit=limit
        )

    def console_attention_counts(self) -> dict[str, int]:
        """Migrations per needs-attention state, every batch together."""
        return console_queries.attention_counts(self._db)

    def console_value_counts(self, batch_id: int, column: str) -> dict[str, int]:
        """A batch's values of last_error_code, new_provider or current_provider, with counts."""
        return console_queries.value_counts(self._db, batch_id, column)

    def console_records(self, migration_ids: Iterable[int]) -> dict[int, MigrationRecord]:
        """The migrations of these ids."""
        return console_queries.records_by_ids(self._db, migration_ids)

    def latest_snapshots(self, migration_ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """Each migration's latest ``snapshot`` event's detail; migrations without one left out."""
        return console_queries.latest_snapshots(self._db, migration_ids)

    def events_of(self, migration_ids: Sequence[int]) -> dict[int, list[AuditEvent]]:
        """Each migration's audit events in order, in one read."""
        return console_queries.events_of(self._db, migration_ids)

    def state_hours(self, batch_id: int, *, now: datetime, hours: int = 48) -> console_queries.StateHours:
        """A batch's counts per state at the end of each of the last ``hours`` hours."""
        return console_queries.state_hours(self._db, batch_id, now=now, hours=hours)

    # ---- key vault (vault.py) ------------------------------------------------------------

    def open_vault(
        self,
        secret: str | None,
        *,
        create: bool = True,
        setting: str = KEY_SETTING,
        scrypt: ScryptParams = DEFAULT_SCRYPT,
        allow_weak: bool = False,
    ) -> KeyVault:
        """The vault of ``secret``, checked against the stored check value first (``SecretError``
        naming ``setting`` when it is missing, weak or wrong); stored when new and ``create``."""
        return vault.open_vault(
            self._db, secret, create=create, setting=setting, scrypt=scrypt, allow_weak=allow_weak
        )

    def live_keys(self) -> dict[str, KeyRecord]:
        """The ``current`` key-encryption key's record and, during a rotation, the ``next`` one's."""
        return vault.live_keys(self._db)

    def add_vault_key(self, record: KeyRecord, status: str) -> KeyRecord:
        """Store ``record`` as the ``status`` (``next``) key unless one is; return the stored one."""
        return vault.add_key(self._db, record, status)

    def keys_to_reseal(self, *, key_id: str, after_id: int, limit: int) -> list[MigrationRecord]:
        """Migrations whose stored key ``key_id`` did not seal, in id order after ``after_id``."""
        return vault.keys_to_reseal(self._db, key_id=key_id, after_id=after_id, limit=limit)

    def key_counts(self, key_id: str) -> tuple[int, int]:
        """(stored keys sealed by ``key_id``, stored keys)."""
        return vault.key_counts(self._db, key_id)

    def finish_key_rotation(self, *, old_id: str, new_id: str, unreadable: Sequence[int] = ()) -> None:
        """Retire ``old_id``, make ``new_id`` current; ``StoreError`` while a key (but the
        ``unreadable`` migrations') is not resealed."""
        vault.finish_rotation(self._db, old_id=old_id, new_id=new_id, unreadable=unreadable)

    # ---- status and reports (stats.py) -----------------------------------------------------

    def batch_info(self, name: str) -> BatchInfo | None:
        """The batch called ``name``, or None when there is none."""
        return stats.batch_info(self._db, name)

    def status_figures(self, *, batch_name: str | None = None, since: datetime) -> StatusFigures:
        """Paused, completed since ``since``, errors by code, the oldest waiting: aggregates only."""
        return stats.status_figures(self._db, batch_name=batch_name, since=since)

    def forecast_inputs(
        self, batch_name: str, *, now: datetime, hour_start: datetime, day_start: datetime
    ) -> ForecastInputs | None:
        """What batch ``batch_name``'s forecast is computed from (forecast_inputs.py); None: no
        such batch. The current wave buckets begin at ``hour_start`` and ``day_start``."""
        return forecast_inputs.read(self._db, batch_name, now=now, hour_start=hour_start, day_start=day_start)

    def error_event_counts(self, migration_ids: list[int]) -> dict[int, int]:
        """Failed tries (``error`` audit events) per migration; migrations without any left out."""
        return stats.error_event_counts(self._db, migration_ids)

    def parity_details(self, migration_ids: list[int]) -> dict[int, dict[str, dict[str, Any]]]:
        """Receive parity per migration: trigger -> the ``parity`` detail of its latest move."""
        return stats.parity_details(self._db, migration_ids)

    # ---- batch schedules (schedules.py) ----------------------------------------------------

    def set_batch_schedule(self, batch_name: str, schedule: BatchSchedule | None, actor: str) -> ScheduleChange:
        """Store (None: clear) batch ``batch_name``'s schedule, recorded as an ``operator`` event on
        each of its open migrations' audit chains in the same transaction; ``InputError`` for an
        unknown batch. The schedule it already has writes nothing."""
        return schedules.set_schedule(self._db, batch_name, schedule, actor=actor)

    def batch_schedule(self, batch_name: str) -> BatchSchedule | None:
        """Batch ``batch_name``'s schedule; None when it has none (or there is no such batch)."""
        found = schedules.read(self._db, batch_name)
        return None if found is None else found.schedule

    def scheduled_batch(self, batch_name: str) -> ScheduledBatch | None:
        """The batch with its schedule and who set it when; None when there is no such batch."""
        return schedules.read(self._db, batch_name)

    def scheduled_batches(self) -> list[ScheduledBatch]:
        """Every batch that has a schedule, by name."""
        return schedules.scheduled(self._db)

    def batch_schedules(self) -> dict[int, BatchSchedule]:
        """Batch id -> schedule of every scheduled batch, in one query (the engine's gate)."""
        return schedules.by_batch_id(self._db)

    # ---- budgets per dependency (budgets.py) ------------------------------------------------

    def reserve_budget(self, name: str, count: int, rate: float) -> float:
        """Reserve ``count`` slots of the shared budget ``name`` at ``rate`` a second; where the
        block starts (epoch seconds on the store's clock). ``BudgetUnavailable`` when the
        database cannot be used (``limiter.SharedLimiter`` calls this)."""
        return budgets.reserve(self._db, name, count, rate)

    def budget_rows(self) -> list[BudgetRow]:
        """Every shared budget's row, by name."""
        return budgets.read_all(self._db)

    # ---- alerts (alerts.py) ---------------------------------------------------------------

    @property
    def alerts(self) -> AlertTables:
        """The alerts' cursor, waiting alerts, outbox and deliveries (engine/alerts.py)."""
        return AlertTables(self._db)

    # ---- the reconciler (findings.py, jobs.py) -------------------------------------------

    def watched_page(
        self, *, after_id: int, limit: int, completed_since: datetime, batch_name: str | None = None
    ) -> list[MigrationRecord]:
        """The next migrations (id order, after ``after_id``) the reconciler looks at: the open
        ones and those completed at or after ``completed_since``."""
        return findings.watched_page(
            self._db, after_id=after_id, limit=limit, completed_since=completed_since, batch_name=batch_name
        )

    def findings_of(self, migration_ids: Sequence[int]) -> dict[int, dict[str, FindingState]]:
        """The stored findings of these migrations: migration id -> kind -> state."""
        return findings.states_of(self._db, migration_ids)

    def unwatched_open_findings(
        self, *, completed_since: datetime, batch_name: str | None = None
    ) -> list[FindingState]:
        """Open findings of migrations cancelled or completed before ``completed_since``."""
        return findings.unwatched_open(self._db, completed_since=completed_since, batch_name=batch_name)

    def record_findings(self, writes: Sequence[FindingWrite]) -> None:
        """Each finding's new state and its ``finding`` audit event (no state move), in one write."""
        findings.record(self._db, writes)

    def open_findings(self, *, batch_name: str | None = None, first: int = 5) -> FindingsSummary:
        """Open findings per kind and the ``first`` oldest."""
        return findings.open_summary(self._db, batch_name=batch_name, first=first)

    def start_job(self, name: str, *, owner: str, lease_s: float, every_s: float, force: bool = False) -> bool:
        """Take a periodic job's lease (one worker at a time; once per ``every_s`` unless ``force``)."""
        return jobs.start(self._db, name, owner=owner, lease_s=lease_s, every_s=every_s, force=force)

    def renew_job(self, name: str, *, owner: str, lease_s: float) -> bool:
        return jobs.renew(self._db, name, owner=owner, lease_s=lease_s)

    def finish_job(self, name: str, *, owner: str) -> None:
        jobs.finish(self._db, name, owner=owner)

    def job_run(self, name: str) -> JobRun | None:
        """A periodic job's lease row: who runs it now, when it last ran."""
        return jobs.read(self._db, name)

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

    def require_audit_key(self) -> None:
        """``ConfigError`` (exit 2, naming the setting) unless a usable audit key is configured."""
        audit.require_key(self._db)

    def verify_audit(self, *, anchor: AuditAnchor | None = None) -> list[BrokenLink]:
        """Every migration whose chain, or whose row against its chain (or ``anchor``), does not
        verify: one ``BrokenLink`` each, with the reason."""
        return audit_verify.verify(self._db, anchor=anchor)

    def take_audit_anchor(self) -> tuple[AuditAnchor | None, list[BrokenLink]]:
        """The chain heads now, HMAC'd; ``(None, broken)`` when the trail does not verify."""
        return audit_anchor.take(self._db)

    def read_audit_anchor(self, data: object, *, source: str) -> AuditAnchor:
        """An anchor from its JSON; ``InputError`` when it is not one, or changed, or of another key."""
        return audit_anchor.from_json(self._db, data, source=source)

    def audit_anchor_json(self, anchor: AuditAnchor) -> dict[str, Any]:
        """The anchor as the JSON object `audit anchor` writes."""
        return audit_anchor.to_json(anchor)

    def export_audit(self, *, batch_name: str | None = None) -> Iterator[dict[str, Any]]:
        """Every event with its migration's party, direction and batch, read in pages."""
        return audit_export.events(self._db, batch_name=batch_name)
