"""The worker: claims due migrations, runs their steps with bounded concurrency, records outcomes.

    ticker (APScheduler interval job, or ``drain``'s loop)
      └─ tick(): claim up to the free slots and a few more, queued (store.claim_due, a lease
           │       per row), unless the circuit breaker is open
           └─ thread pool: step(ctx, migration) ──► outcome ──► Change ──► recorder ──► store.apply_many
                                    PSB calls ───(changes.py)──────────► audit events (CAS each, same commit)
    renew job (every lease_s / 3): renew the running steps' leases; heartbeat into ``workers``

The database is the schedule; APScheduler only ticks, in memory, in this process. A step's
result is applied with a compare-and-set on (id, state, version, lease owner): if another
worker re-claimed the row after our lease ran out, our late result is discarded and logged.
No database transaction is open while a step calls the PSB. The worker's heartbeat and its
breaker's state (written on every change) are what `status` shows of it.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import sys
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from migration_engine.clock import Clock
from migration_engine.engine.breaker import CircuitBreaker
from migration_engine.engine.changes import ChangeBuilder, call_event
from migration_engine.engine.handoff import Handoff, make_handoff
from migration_engine.engine.outcomes import Fail, Outcome, Wait
from migration_engine.engine.recorder import Recorded, Recorder
from migration_engine.engine.retry import RetryPolicy
from migration_engine.engine.steps import StepContext, step_for
from migration_engine.errors import (
    LeaseLost,
    NetworkLookupError,
    PeppolMigrateError,
    PsbAuthError,
    PsbPermanentError,
    PsbTransientError,
    StoreError,
    is_systemic,
)
from migration_engine.keys import KeyVault
from migration_engine.machine import Trigger
from migration_engine.peppol.verification import NetworkVerifier
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb.client import ApiCall, PsbClient
from migration_engine.settings import Settings
from migration_engine.store import Change, MigrationRecord, Store, WorkerStatus

log = logging.getLogger("migration_engine.engine.worker")

# The interpreter's switch interval while serving (CPython's default is 5 ms). A step thread
# whose answer has arrived waits for the GIL; with 32 such threads, a recorder and a claimer,
# a 50 ms call took 64.5 ms on average in the benchmark (2 cores), 61.8 ms with 1 ms.
SERVE_SWITCH_INTERVAL_S = 0.001


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


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
        network: NetworkVerifier | None = None,
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
        self.changes = ChangeBuilder(worker_id=self.worker_id, settings=settings, retry=self.retry)
        self.breaker = CircuitBreaker(clock=clock, on_change=lambda *_: self.heartbeat())
        self._started_at = clock.now()
        self.on_applied = on_applied
        # verify.peppol_network: the SML/SMP verifier, built from the settings unless given.
        self._owns_network = network is None and settings.verify.peppol_network
        self.network = NetworkVerifier.from_settings(settings) if self._owns_network else network
        self.concurrency = settings.worker.concurrency
        # Claimed rows beyond the running ones wait in the pool's queue, so a finished step
        # starts the next at once, and claims go in batches rather than one per finished step.
        self._prefetch = self.concurrency // 2
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="step")
        self._recorder = Recorder(apply_many=store.apply_many, on_recorded=self._recorded)
        # Claims after a recording run here, not on the recorder's thread, which only records.
        self._claim_wanted = threading.Event()
        self._claimer: threading.Thread | None = None
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
            # Rows whose outcome only waits for the recorder hold no step thread: claim past them.
            waiting = min(self._recorder.pending(), self.concurrency)
            free = self.concurrency + self._prefetch + waiting - self.in_flight()
            if free < max(1, self._prefetch // 2):
                return 0  # the queue is still over half full: claim later, several at once
            allowed = self.breaker.allowed(free)
            if allowed <= 0:
                return 0
            records = self.store.claim_due(
                worker_id=self.worker_id, limit=allowed, lease_s=self.settings.worker.lease_s
            )
            if not records:
                self.breaker.release_probe()  # a half-open probe found nothing due: no evidence
            with self._lock:
                for record in records:
                    self._in_flight[record.id] = record
            for record in records:
                self._pool.submit(self._run, record)
            return len(records)
        finally:
            self._tick_lock.release()

    def renew_leases(self) -> None:
        """Keep the leases of running steps alive, so a slow step is not taken over; heartbeat."""
        with self._lock:
            running = list(self._in_flight.values())
        for record in running:
            if not self.store.renew_lease(
                migration_id=record.id,
                worker_id=self.worker_id,
                version=record.version,
                lease_s=self.settings.worker.lease_s,
            ) and self._still_in_flight(record):  # not just recorded (which ends the lease)
                log.warning(
                    "lease lost while the step runs; its result will be discarded",
                    extra={"party_id": record.party_id, "migration_id": record.id, "action": "lease_lost"},
                )
        self._last_renew = self.clock.monotonic()
        self.heartbeat()

    def _still_in_flight(self, record: MigrationRecord) -> bool:
        with self._lock:
            return record.id in self._in_flight

    def heartbeat(self, *, stopped: bool = False) -> None:
        """Record this worker's presence and circuit for `status`; a database hiccup is only logged."""
        now = self.clock.now()
        every = max(1.0, self.settings.worker.lease_s / 3)  # the renew job's period
        status = WorkerStatus(
            worker_id=self.worker_id,
            started_at=self._started_at,
            heartbeat_at=now,
            alive_until=now + timedelta(seconds=3 * every + self.settings.worker.poll_interval_s),
            stopped_at=now if stopped else None,
            circuit=self.breaker.state,
            circuit_reason=self.breaker.reason or None,
            steps_run=self.steps_run,
        )
        try:
            self.store.record_worker(status)
        except StoreError as exc:
            log.warning(f"heartbeat not recorded: {exc}", extra={"action": "heartbeat_failed"})

    # ---- running one step ---------------------------------------------------------------

    def _run(self, record: MigrationRecord) -> None:
        """On a step thread: the step's calls; the recorder stores its outcome (recorder.py)."""
        try:
            change = self.decide(record)
        except Exception as exc:  # a bug in the step: nothing to record
            self._recorded([(record, None, exc)])
            return
        self._recorder.submit(record, change)

    def _recorded(self, results: list[Recorded]) -> None:
        """On the recorder's thread, after the commit: each outcome stored, stale (None) or failed."""
        with self._lock:  # recorded: the lease has ended, nothing to renew
            for record, _, _ in results:
                self._in_flight.pop(record.id, None)
        for record, applied, error in results:
            try:
                if error is not None:
                    raise error  # logged below as the crash it is
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
                self.breaker.release_probe()
                log.exception(
                    "step crashed; the migration is retried when its lease expires",
                    extra={"party_id": record.party_id, "migration_id": record.id, "action": "step_crashed"},
                )
        self._wake.set()
        self._want_claim()  # slots are free: claim the next due migrations without waiting for the ticker

    def _want_claim(self) -> None:
        if self._claimer is None:
            with self._lock:
                if self._claimer is None:
                    self._claimer = threading.Thread(target=self._claim_loop, name="claimer", daemon=True)
                    self._claimer.start()
        self._claim_wanted.set()

    def _claim_loop(self) -> None:
        while not self._closing:
            self._claim_wanted.wait()
            self._claim_wanted.clear()
            if self._closing:
                return
            try:
                self.tick()
            except Exception:  # a database hiccup: the ticker claims again at its next run
                log.exception("claiming after a recorded step failed", extra={"action": "tick_failed"})

    def _fence(self, record: MigrationRecord) -> None:
        """Before a call that must not be made twice: renew the lease, or stop if it is lost."""
        lease_s = self.settings.worker.lease_s
        try:
            held = self.store.renew_lease(
                migration_id=record.id, worker_id=self.worker_id, version=record.version, lease_s=lease_s
            )
        except StoreError as exc:
            raise LeaseLost(f"the lease of migration {record.id} could not be confirmed: {exc}") from exc
        if not held:
            raise LeaseLost(f"the lease of migration {record.id} ran out and another worker took it over")

    def decide(self, record: MigrationRecord) -> Change:
        """Run the step of the record's state and turn what happened into one Change.

        The breaker counts API answers, not verdicts: a refused key is the API working. A step
        that called no API proves nothing either way, so a probe it was is handed back.
        """
        calls: list[ApiCall] = []
        psb = self.psb.recording(calls.append)
        now = self.clock.now()
        ctx = StepContext(
            psb=psb,
            settings=self.settings,
            profiles=self.profiles,
            vault=self.vault,
            handoff=self.handoff,
            now=now,
            network=self.network,
            fence=lambda: self._fence(record),
        )
        step = step_for(record.direction, record.state)
        outcome: Outcome | None
        error: PsbTransientError | PsbAuthError | None = None
        network_trouble = False
        if step is None:
            outcome = Wait(until=None, detail={"note": f"no step runs in {record.state}"})
        else:
            try:
                outcome = step(ctx, record)
            except PsbTransientError as exc:
                outcome, error = None, exc
            except NetworkLookupError as exc:  # DNS or an SMP, not the PSB: retried alike, not the breaker's
                outcome, network_trouble = None, True
                error = PsbTransientError(exc.message, code=exc.code, status=exc.status, party_id=exc.party_id)
            except PsbAuthError as exc:
                if is_systemic(exc):  # the credentials, not this party
                    outcome, error = None, exc
                else:
                    outcome = Fail(Trigger.FAIL, reason=str(exc), code=exc.code or f"HTTP{exc.status}")
            except PsbPermanentError as exc:
                outcome = Fail(Trigger.FAIL, reason=str(exc), code=exc.code or f"HTTP{exc.status}")
            except LeaseLost as exc:  # stop; the compare-and-set discards this, or (a database hiccup) runs it again
                outcome = Wait(until=self.clock.now(), detail={"note": str(exc)})
            except PeppolMigrateError as exc:
                outcome = Fail(Trigger.FAIL, reason=str(exc), code=type(exc).__name__)
        if calls:
            ok = error is None or network_trouble
            self.breaker.record(ok=ok, reason=str(error or ""), systemic=bool(error and is_systemic(error)))
        else:
            self.breaker.release_probe()
        events = [call_event(c, self.worker_id) for c in calls]
        if outcome is None:
            assert error is not None
            # Retry-After counts from the answer, not from the start of a step of several calls.
            return self.changes.for_error(record, error, events, self.clock.now())
        return self.changes.for_outcome(record, outcome, events, now)

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
        self.heartbeat()
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
            if summary.due_now and self.breaker.may_claim():
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
        self.heartbeat()
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(switch_interval, SERVE_SWITCH_INTERVAL_S))
        scheduler.start()
        try:
            while not stop.wait(timeout=0.5):
                pass
        finally:
            scheduler.shutdown(wait=False)
            self.close()
            sys.setswitchinterval(switch_interval)

    def close(self) -> None:
        """Stop claiming; let running steps finish and record their outcome; say so in `status`."""
        if self._closing:
            return
        self._closing = True
        self._claim_wanted.set()  # let the claimer see the closing and stop
        self._pool.shutdown(wait=True)
        self._recorder.close()
        if self._claimer is not None:
            self._claimer.join()
        if self._owns_network and self.network is not None:
            self.network.close()
        self.heartbeat(stopped=True)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
