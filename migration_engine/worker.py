"""The worker: claims due migrations, runs their steps with bounded concurrency, records outcomes.

    ticker (APScheduler interval job, or ``drain``'s loop)
      └─ tick(): claim up to the free slots (store.claim_due, a lease per row)
           └─ thread pool: step(ctx, migration) ──► outcome ──► Change ──► store.apply (CAS)
                                    PSB calls ─────────────────────────► audit events (same commit)

The database is the schedule; APScheduler only ticks, in memory, in this process. A step's
result is applied with a compare-and-set on (id, state, version, lease owner): if another
worker re-claimed the row after our lease ran out, our late result is discarded and logged.
No database transaction is open while a step calls the PSB.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

from migration_engine import machine, scheduling
from migration_engine.breaker import CircuitBreaker
from migration_engine.clock import Clock
from migration_engine.errors import (
    PeppolMigrateError,
    PsbAuthError,
    PsbPermanentError,
    PsbTransientError,
    is_systemic,
)
from migration_engine.handoff import Handoff, make_handoff
from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State, Trigger
from migration_engine.outcomes import Advance, Fail, Outcome, Wait
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb import ApiCall, PsbClient
from migration_engine.retry import GiveUp, RetryPolicy
from migration_engine.settings import Settings
from migration_engine.steps import StepContext, step_for
from migration_engine.store import Change, EventIn, MigrationRecord, Store

log = logging.getLogger("migration_engine.worker")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def call_event(call: ApiCall, actor: str) -> EventIn:
    return EventIn(
        kind="api_call",
        actor=actor,
        http_method=call.method,
        http_path=call.path,
        http_status=call.status,
        duration_ms=round(call.duration_ms, 1),
        request_id=call.request_id,
        detail={"error_code": call.error_code} if call.error_code else {},
    )


class Worker:
    """One worker process's engine. Thread-safe; many workers may share one database."""

    def __init__(
        self,
        *,
        store: Store,
        psb: PsbClient,
        settings: Settings,
        profiles: ProfileCatalog,
        vault: KeyVault | None,
        clock: Clock,
        worker_id: str | None = None,
        handoff: Handoff | str | None = "settings",
        rng: random.Random | None = None,
        on_applied: Callable[[MigrationRecord], None] | None = None,
    ) -> None:
        self.store = store
        self.psb = psb
        self.settings = settings
        self.profiles = profiles
        self.vault = vault
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        h = settings.handoff
        self.handoff: Handoff | None = (
            make_handoff(h.mode, outbox_dir=h.outbox_dir, endpoint=h.endpoint) if handoff == "settings" else handoff  # type: ignore[assignment]
        )
        self.retry = RetryPolicy(settings.retry, rng=rng)
        self.breaker = CircuitBreaker(clock=clock)
        self.on_applied = on_applied
        self.concurrency = settings.worker.concurrency
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="step")
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._in_flight: dict[int, MigrationRecord] = {}
        self._wake = threading.Event()
        self._closing = False
        self._last_renew = clock.monotonic()
        self.steps_run = 0
        self.stale_discarded = 0

    # ---- claiming -----------------------------------------------------------------------

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def tick(self) -> int:
        """Claim what is due, up to the free slots, and start it. Returns how many started."""
        if self._closing or not self._tick_lock.acquire(blocking=False):
            return 0
        try:
            free = self.concurrency - self.in_flight()
            allowed = self.breaker.allowed(free)
            if allowed <= 0:
                return 0
            records = self.store.claim_due(
                worker_id=self.worker_id, limit=allowed, lease_s=self.settings.worker.lease_s
            )
            with self._lock:
                for record in records:
                    self._in_flight[record.id] = record
            for record in records:
                self._pool.submit(self._run, record)
            return len(records)
        finally:
            self._tick_lock.release()

    def renew_leases(self) -> None:
        """Keep the leases of running steps alive, so a slow step is not taken over."""
        with self._lock:
            running = list(self._in_flight.values())
        for record in running:
            if not self.store.renew_lease(
                migration_id=record.id,
                worker_id=self.worker_id,
                version=record.version,
                lease_s=self.settings.worker.lease_s,
            ):
                log.warning(
                    "lease lost while the step runs; its result will be discarded",
                    extra={"party_id": record.party_id, "migration_id": record.id, "action": "lease_lost"},
                )
        self._last_renew = self.clock.monotonic()

    # ---- running one step ---------------------------------------------------------------

    def _run(self, record: MigrationRecord) -> None:
        try:
            change = self.decide(record)
            applied = self.store.apply(change)
            self.steps_run += 1
            if applied is None:
                self.stale_discarded += 1
                log.warning(
                    "result discarded: the migration was moved by someone else meanwhile",
                    extra={"party_id": record.party_id, "migration_id": record.id, "action": "stale_result"},
                )
            else:
                if applied.state is not record.state:
                    log.info(
                        f"{record.state} -> {applied.state}",
                        extra={"party_id": record.party_id, "migration_id": record.id, "action": "transition"},
                    )
                if self.on_applied is not None:
                    self.on_applied(applied)
        except Exception:  # a bug or a database outage: the lease runs out and the row is retried
            log.exception(
                "step crashed; the migration is retried when its lease expires",
                extra={"party_id": record.party_id, "migration_id": record.id, "action": "step_crashed"},
            )
        finally:
            with self._lock:
                self._in_flight.pop(record.id, None)
            self._wake.set()
        self.tick()  # a slot is free: claim the next due migration without waiting for the ticker

    def decide(self, record: MigrationRecord) -> Change:
        """Run the step of the record's state and turn what happened into one Change."""
        calls: list[ApiCall] = []
        psb = self.psb.recording(calls.append)
        now = self.clock.now()
        ctx = StepContext(
            psb=psb, settings=self.settings, profiles=self.profiles, vault=self.vault, handoff=self.handoff, now=now
        )
        step = step_for(record.direction, record.state)
        outcome: Outcome | None
        error: PsbTransientError | PsbAuthError | None = None
        if step is None:
            outcome = Wait(until=None, detail={"note": f"no step runs in {record.state}"})
        else:
            try:
                outcome = step(ctx, record)
                self.breaker.record(ok=True)
            except PsbTransientError as exc:
                outcome, error = None, exc
                self.breaker.record(ok=False, reason=str(exc))
            except PsbAuthError as exc:
                if is_systemic(exc):  # the credentials, not this party
                    outcome, error = None, exc
                    self.breaker.record(ok=False, reason=str(exc), systemic=True)
                else:
                    outcome = Fail(Trigger.FAIL, reason=str(exc), code=exc.code or f"HTTP{exc.status}")
            except PsbPermanentError as exc:
                outcome = Fail(Trigger.FAIL, reason=str(exc), code=exc.code or f"HTTP{exc.status}")
            except PeppolMigrateError as exc:
                outcome = Fail(Trigger.FAIL, reason=str(exc), code=type(exc).__name__)
        events = [call_event(c, self.worker_id) for c in calls]
        if outcome is None:
            assert error is not None
            return self._retry_change(record, error, events, now)
        return self._outcome_change(record, outcome, events, now)

    def _base(self, record: MigrationRecord, events: list[EventIn], **fields: Any) -> Change:
        return Change(
            migration_id=record.id,
            expected_state=record.state,
            expected_version=record.version,
            lease_owner=self.worker_id,
            events=events,
            **fields,
        )

    def _retry_change(
        self, record: MigrationRecord, exc: PsbTransientError | PsbAuthError, events: list[EventIn], now: datetime
    ) -> Change:
        retry_after = getattr(exc, "retry_after_s", None)
        decision = self.retry.decide(attempts_so_far=record.attempts, now=now, retry_after_s=retry_after)
        code = exc.code or (f"HTTP{exc.status}" if exc.status else type(exc).__name__)
        if isinstance(decision, GiveUp):
            reason = f"gave up after {decision.attempts} attempts: {exc}"
            return self._outcome_change(
                record, Fail(Trigger.FAIL, reason=reason, code=code), events, now, attempts=decision.attempts
            )
        events.append(
            EventIn(
                kind="error",
                actor=self.worker_id,
                from_state=record.state,
                to_state=record.state,
                detail={
                    "error": str(exc),
                    "code": code,
                    "attempt": decision.attempts,
                    "retry_at": decision.when.isoformat(),
                },
            )
        )
        return self._base(
            record,
            events,
            next_run_at=decision.when,
            attempts=decision.attempts,
            last_error=str(exc),
            last_error_code=code,
        )

    def _outcome_change(
        self,
        record: MigrationRecord,
        outcome: Outcome,
        events: list[EventIn],
        now: datetime,
        attempts: int | None = None,
    ) -> Change:
        if isinstance(outcome, Wait):
            events.append(
                EventIn(
                    kind="observation",
                    actor=self.worker_id,
                    from_state=record.state,
                    to_state=record.state,
                    detail=dict(outcome.detail),
                )
            )
            return self._base(record, events, next_run_at=outcome.until)
        dest = machine.next_state(record.direction, record.state, outcome.trigger)
        detail: dict[str, Any] = dict(outcome.detail)
        if isinstance(outcome, Fail):
            detail.update(reason=outcome.reason, code=outcome.code)
        events.append(
            EventIn(
                kind="transition",
                actor=self.worker_id,
                from_state=record.state,
                to_state=dest,
                trigger=outcome.trigger,
                detail=detail,
            )
        )
        key_issued_at = (
            outcome.key_issued_at if isinstance(outcome, Advance) and outcome.key_issued_at else record.key_issued_at
        )
        has_key = record.key_ciphertext is not None or (
            isinstance(outcome, Advance) and outcome.key_ciphertext is not None
        )
        fields: dict[str, Any] = {
            "new_state": dest,
            "next_run_at": scheduling.next_run_at(
                record.direction, dest, has_key=has_key, settings=self.settings, now=now
            ),
            "deadline_at": scheduling.deadline_at(
                record.direction, dest, key_issued_at=key_issued_at, settings=self.settings, now=now
            ),
            "attempts": attempts if attempts is not None else 0,
        }
        if isinstance(outcome, Advance):
            fields.update(last_error=None, last_error_code=None, failed_state=None)
            if outcome.key_ciphertext is not None:
                fields.update(key_ciphertext=outcome.key_ciphertext, key_issued_at=outcome.key_issued_at)
        else:
            fields.update(last_error=outcome.reason, last_error_code=outcome.code)
            if dest is State.NEEDS_ATTENTION:
                fields["failed_state"] = record.state
        return self._base(record, events, **fields)

    # ---- running until idle, or as a service ----------------------------------------------

    def is_idle(self) -> bool:
        """Nothing in flight here, nothing leased elsewhere, nothing due now or scheduled later."""
        if self.in_flight():
            return False
        summary = self.store.work_summary()
        return summary.due_now == 0 and summary.leased == 0 and summary.scheduled_later == 0

    def drain(self) -> None:
        """Run until idle, driven by the injected clock (tests pass a ManualClock)."""
        poll = self.settings.worker.poll_interval_s
        while True:
            started = self.tick()
            if self.clock.monotonic() - self._last_renew > self.settings.worker.lease_s / 3:
                self.renew_leases()
            if self.in_flight():
                self._wake.wait(timeout=poll)  # woken as soon as a step finishes
                self._wake.clear()
                continue
            if started:
                continue
            summary = self.store.work_summary()
            if summary.due_now and self.breaker.allowed(1) > 0:
                continue
            if summary.due_now == 0 and summary.leased == 0 and summary.scheduled_later == 0:
                return
            wait = poll
            if summary.due_now == 0 and summary.leased == 0 and summary.next_run_at is not None:
                wait = max(0.0, (summary.next_run_at - self.clock.now()).total_seconds())
                wait = min(wait, max(poll, self.settings.takeover.poll_max_s))
            self.clock.sleep(max(wait, 0.001))

    def serve(self, *, until_idle: bool, stop: threading.Event | None = None) -> None:
        """Run with the APScheduler ticker (in-process, memory job store) until stopped or idle."""
        from apscheduler.executors.pool import ThreadPoolExecutor as TickExecutor
        from apscheduler.jobstores.memory import MemoryJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        stop = stop or threading.Event()
        poll = self.settings.worker.poll_interval_s

        def ticker() -> None:
            try:
                self.tick()
                if until_idle and self.is_idle():
                    stop.set()
            except Exception:
                log.exception("tick failed; trying again next tick", extra={"action": "tick_failed"})

        scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            executors={"default": TickExecutor(2)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(poll * 5))},
            timezone="UTC",
        )
        scheduler.add_job(ticker, "interval", seconds=poll, id="tick", next_run_time=datetime.now().astimezone())
        scheduler.add_job(self.renew_leases, "interval", seconds=max(1.0, self.settings.worker.lease_s / 3), id="renew")
        scheduler.start()
        try:
            while not stop.wait(timeout=0.5):
                pass
        finally:
            scheduler.shutdown(wait=False)
            self.close()

    def close(self) -> None:
        """Stop claiming; let running steps finish and record their outcome."""
        self._closing = True
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def direction_of(value: str) -> Direction:
    return Direction(value)
