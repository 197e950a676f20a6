"""The worker: claims due migrations, runs their steps with bounded concurrency, records outcomes.

    tick(): claim up to the free slots and a few more, queued (store.claim_due, a lease per
     │      row), unless the circuit breaker is open
     └─ thread pool: decide(record): step(ctx, record) ──► outcome ──► Change
              PSB calls, handoff POST ──► api_call events (same Change, same commit)
            └─ recorder thread: store.apply_many, a CAS per change (group commit), then
                 a pending operator request on the row (operator_changes.follow_up)
                 └─ _recorded ── slots free ──► the loop wakes its claim job
    renew_leases(): keep the running steps' leases alive; heartbeat into ``workers``

``run`` hands the worker to its loop (``loop.py``: APScheduler's claim and renew jobs), the
one driver of ``tick`` and ``renew_leases`` in production, the demo, the benchmark and the
tests.

The database is the schedule. A step's result is applied with a compare-and-set on (id,
state, version, lease owner): if another worker re-claimed the row after our lease ran out,
our late result is discarded and logged, but its api_call events are appended all the same
(what the step did at the PSB happened). An operator's action on a row in flight waits on the
row as a request; it is applied right after the step's outcome, in the same transaction, or,
when the worker stopped without an outcome, by the next claim instead of the step. No
database transaction is open while a step calls the PSB. The worker's heartbeat and its
breaker's state (written on every change) are what `status` shows of it."""

from __future__ import annotations

import logging
import os
import random
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta

from migration_engine.clock import Clock
from migration_engine.engine import settlement
from migration_engine.engine.alerts import Alerts, circuit_opened
from migration_engine.engine.baseline import Baselines, SnapshotSource
from migration_engine.engine.baseline import active as snapshots_active
from migration_engine.engine.breaker import CircuitBreaker
from migration_engine.engine.changes import ChangeBuilder
from migration_engine.engine.handoff import Handoff, make_handoff
from migration_engine.engine.loop import Loop
from migration_engine.engine.metrics import WorkerMetrics
from migration_engine.engine.operator_changes import follow_up
from migration_engine.engine.outcomes import Fail, Outcome, Wait
from migration_engine.engine.pacing import Pacer, hold_change, starts_here
from migration_engine.engine.reconciler import Reconciler
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
from migration_engine.peppol.snapshots import NetworkLookups
from migration_engine.peppol.verification import NetworkVerifier
from migration_engine.profiles import CapabilityMap, ProfileCatalog
from migration_engine.psb.client import ApiCall, PsbClient
from migration_engine.settings import Settings
from migration_engine.store import (
    Change,
    EventIn,
    MigrationRecord,
    PendingRequest,
    Store,
    WorkerStatus,
    WorkSummary,
)

log = logging.getLogger("migration_engine.engine.worker")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def call_event(call: ApiCall, actor: str) -> EventIn:
    """A step's HTTP exchange (a PSB call or the key handoff's POST) as its ``api_call`` audit event."""
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


NOT_APPLIED = (
    "the step's result was not applied: the migration was moved by someone else meanwhile "
    "(its lease was lost); this call was made all the same"
)


def stale_events(events: Sequence[EventIn]) -> list[EventIn]:
    """A step's api_call events as appended when its result cannot be applied."""
    return [replace(e, detail={**e.detail, "not_applied": NOT_APPLIED}) for e in events if e.kind == "api_call"]


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
        snapshots: SnapshotSource | None = None,
        reconciler: Reconciler | None = None,
        alerts: Alerts | None = None,
    ) -> None:
        self.store = store
        self.psb = psb
        self.settings = settings
        self.profiles = profiles
        self.vault = vault
        self.clock = clock
        self.worker_id = worker_id or default_worker_id()
        # "settings": the configured handoff, built (and closed) here; otherwise the caller's.
        self._owns_handoff = handoff == "settings"
        self.handoff: Handoff | None = (
            make_handoff(settings, clock=clock) if handoff == "settings" else handoff  # type: ignore[assignment]
        )
        self.retry = RetryPolicy(settings.retry, rng=rng)
        self.changes = ChangeBuilder(worker_id=self.worker_id, settings=settings, retry=self.retry)
        # Batch schedules: their windows and caps gate each migration's first mutating call (pacing.py).
        self.pacing = Pacer(store=store, settings=settings, worker_id=self.worker_id)
        self.breaker = CircuitBreaker(clock=clock, on_change=self._circuit_changed)
        self._started_at = clock.now()
        self.on_applied = on_applied
        # verify.peppol_network: the SML/SMP verifier, built from the settings unless given.
        self._owns_network = network is None and settings.verify.peppol_network
        self.network = NetworkVerifier.from_settings(settings) if self._owns_network else network
        # Receive parity: the snapshot before the first mutating call (baseline.py), and the map
        # of document types to capabilities the steps configure and verify with.
        self.capability_map = CapabilityMap.load(settings.parity.capability_map)
        self._owns_snapshots = snapshots is None and snapshots_active(settings)
        self._lookups = NetworkLookups.from_settings(settings, clock=clock) if self._owns_snapshots else None
        snapshots = self._lookups or snapshots
        self.baselines = Baselines(
            settings=settings, source=snapshots, read_events=store.events, retry=self.retry, changes=self.changes
        )
        # The reconciler the loop runs while the worker runs as a service (engine/reconciler.py).
        self.reconciler = reconciler
        if reconciler is not None:
            reconciler.owner = self.worker_id
        self._reconcile_lock = threading.Lock()
        self._next_reconcile_at: datetime | None = None  # None: ask at once
        # The alerts the loop produces and sends while the worker runs as a service (engine/alerts.py).
        self.alerts = alerts
        if alerts is not None:
            alerts.owner = self.worker_id
        self._alerts_lock = threading.Lock()
        self._next_alerts_at: datetime | None = None
        self.concurrency = settings.worker.concurrency
        self.poll_interval_s = settings.worker.poll_interval_s
        # Claimed rows beyond the running ones wait in the pool's queue, so a finished step
        # starts the next at once, and claims go in batches rather than one per finished step.
        self._prefetch = self.concurrency // 2
        self._claim_at_least = max(1, self._prefetch // 2)  # claim when the queue is half empty
        self.lease_s = settings.worker.lease_s
        self.renew_every = max(1.0, self.lease_s / 3)
        self._pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="step")
        self._recorder = Recorder(
            apply_many=lambda changes: store.apply_many(changes, follow_up=self._follow_up),
            on_recorded=self._recorded,
        )
        self._lock = threading.Lock()
        self._tick_lock = threading.Lock()
        self._in_flight: dict[int, MigrationRecord] = {}
        self._closing = False
        self._last_renew = clock.monotonic()
        self._loop: Loop | None = None  # while ``run`` runs
        self.steps_run = 0
        self.stale_discarded = 0
        self.metrics = WorkerMetrics(store=store, circuit=lambda: self.breaker.state, in_flight=self.in_flight)

    # ---- claiming -----------------------------------------------------------------------

    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def _free(self) -> int:
        """Slots to claim for: the steps' threads, the queue ahead of them, and the rows whose
        outcome only waits for the recorder (they hold no step thread)."""
        waiting = min(self._recorder.pending(), self.concurrency)
        return self.concurrency + self._prefetch + waiting - len(self._in_flight)

    def tick(self) -> int:
        """Claim what is due, up to the free slots, and start it. Returns how many started."""
        if self._closing or not self._tick_lock.acquire(blocking=False):
            return 0
        try:
            if self._closing:  # close() began meanwhile: the pool takes nothing more
                return 0
            free = self._free()
            if free < self._claim_at_least:
                return 0  # the queue is still over half full: claim later, several at once
            allowed = self.breaker.allowed(free)
            if allowed <= 0:
                return 0
            # Batches that may not start anything now have their waiting rows held first, so the
            # claim does not take them only to put them back; higher priorities are claimed first.
            self.pacing.before_claim(self.clock.now())
            first, last = self.pacing.claim_order()
            records = self.store.claim_due(
                worker_id=self.worker_id, limit=allowed, lease_s=self.settings.worker.lease_s, first=first, last=last
            )
            self.metrics.claimed(len(records), self.clock.now())
            if not records:
                self.breaker.release_probe()  # a half-open probe found nothing due: no evidence
            with self._lock:
                for record in records:
                    self._in_flight[record.id] = record
            for record in records:
                if record.pending is not None:  # its worker stopped mid-step: the request, not the step
                    change = follow_up(
                        record, record.pending, settings=self.settings, now=self.clock.now(), stale=True
                    )
                    self._recorder.submit(record, change)
                else:
                    self._pool.submit(self._run, record)
            return len(records)
        finally:
            self._tick_lock.release()

    def renew_leases(self) -> None:
        """Keep the leases of running steps alive, so a slow step is not taken over; heartbeat."""
        self._last_renew = self.clock.monotonic()  # from the start: a wake meanwhile is not a second renewal
        with self._lock:
            running = list(self._in_flight.values())
        for record in running:
            if not self.store.renew_lease(
                migration_id=record.id,
                worker_id=self.worker_id,
                version=record.version,
                lease_s=self.settings.worker.lease_s,
            ) and self._still_in_flight(record):  # not just recorded (which ends the lease)
                self.metrics.lease_lost()
                log.warning(
                    "lease lost while the step runs; its result will be discarded",
                    extra={"party_id": record.party_id, "migration_id": record.id, "action": "lease_lost"},
                )
        self.heartbeat()

    def _still_in_flight(self, record: MigrationRecord) -> bool:
        """Whether this very claim of ``record`` still runs: the row may have been recorded and
        claimed again by this worker since the renewal read it (a new version), and that newer
        claim's lease is not the one that failed to renew."""
        with self._lock:
            current = self._in_flight.get(record.id)
            return current is not None and current.version == record.version

    def heartbeat(self, *, stopped: bool = False) -> None:
        """Record this worker's presence and circuit for `status`; a database hiccup is only logged."""
        now = self.clock.now()
        every = self.renew_every  # the renew job's period
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

    def _follow_up(self, record: MigrationRecord, pending: PendingRequest) -> Change:
        """In the recorder's transaction: the operator's request made after the step's outcome."""
        return follow_up(record, pending, settings=self.settings, now=self.clock.now())

    def _run(self, record: MigrationRecord) -> None:
        """On a step thread: the step's calls; the recorder stores its outcome (recorder.py)."""
        try:
            with self.metrics.step_timer(record.state):
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
            room = self._free() >= self._claim_at_least
        for record, applied, error in results:
            try:
                if error is not None:
                    raise error  # logged below as the crash it is
                self.steps_run += 1
                if applied is None:
                    self.stale_discarded += 1
                    self.metrics.stale_result()
                    log.warning(
                        "result discarded: the migration was moved by someone else meanwhile "
                        "(its calls are in the audit trail)",
                        extra={"party_id": record.party_id, "migration_id": record.id, "action": "stale_result"},
                    )
                else:
                    if applied.state is not record.state:
                        # A move into a state that needs a person is what an operator filters for.
                        level = logging.WARNING if applied.state in settlement.NEEDS_A_PERSON else logging.INFO
                        log.log(
                            level,
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
        if room and self._loop is not None:  # slots are free: claim now, not at the next poll
            self._loop.wake_claim()

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

        The breaker counts PSB answers, not verdicts: a refused key is the API working. A step
        that called no PSB endpoint (none at all, or only the new provider's handoff endpoint)
        proves nothing about the PSB either way, so a probe it was is handed back.
        """
        calls: list[tuple[ApiCall, bool]] = []  # each exchange, and whether the PSB answered it
        psb = self.psb.recording(lambda call: calls.append((call, True)))
        handoff = self.handoff.recording(lambda call: calls.append((call, False))) if self.handoff else None
        now = self.clock.now()
        # The batch's schedule: a first mutating call only inside its window and caps (its start
        # slot is taken here, before the snapshot and the step), else the row waits its turn.
        hold = self.pacing.gate(record, now)
        if hold is not None:
            self.breaker.release_probe()
            return hold_change(record, hold, worker_id=self.worker_id)
        snapshot, instead = self.baselines.prepare(record, now)
        if instead is not None:  # the snapshot (or its failure) is this run's change; the step runs next
            self.breaker.release_probe()
            return instead
        ctx = StepContext(
            psb=psb,
            settings=self.settings,
            profiles=self.profiles,
            vault=self.vault,
            handoff=handoff,
            now=now,
            network=self.network,
            fence=lambda: self._fence(record),
            snapshot=snapshot,
            capability_map=self.capability_map,
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
        if any(by_psb for _, by_psb in calls):
            ok = error is None or network_trouble
            self.breaker.record(ok=ok, reason=str(error or ""), systemic=bool(error and is_systemic(error)))
        else:
            self.breaker.release_probe()
        self.metrics.psb_calls(call for call, by_psb in calls if by_psb)
        events = [call_event(call, self.worker_id) for call, _ in calls]
        if outcome is None:
            assert error is not None
            # Retry-After counts from the answer, not from the start of a step of several calls.
            change = self.changes.for_error(record, error, events, self.clock.now())
            self.metrics.retried(change)
        else:
            change = self.changes.for_outcome(record, outcome, events, now)
        if starts_here(record):  # this step tried the first mutating call: the migration has started
            change = replace(change, started_at=now)
        # Whatever becomes of the result, what the step did remotely is recorded.
        return replace(change, if_stale=stale_events(events)) if events else change

    # ---- the loop ------------------------------------------------------------------------

    def run(self, *, until_idle: bool, stop: threading.Event | None = None, until_settled: bool = False) -> None:
        """Claim, run and record until ``stop`` is set or, with ``until_idle``, no work is left, or,
        with ``until_settled``, nothing can progress without outside help (``settlement.py``);
        then ``close``. Blocks the calling thread meanwhile. The loop is ``engine/loop.py``.

        Tests that need to claim step by step call ``tick`` and ``renew_leases`` themselves
        instead; without ``run`` nothing claims on its own."""
        if self._closing or self._loop is not None:
            raise RuntimeError("a worker runs once: build another to run again")
        self._loop = Loop(self, until_idle=until_idle, stop=stop, until_settled=until_settled)
        try:
            self._loop.run()
        finally:
            self.close()

    def renewal_due(self) -> bool:
        """A third of the lease has passed on the engine's clock since the last renewal."""
        return self.clock.monotonic() - self._last_renew >= self.renew_every

    def work_summary(self) -> WorkSummary:
        return self.store.work_summary()

    def calendar(self) -> dict[str, datetime]:
        """Batch name -> the next moment (engine clock) its window opens or closes or its wave resets."""
        return self.pacing.calendar(self.clock.now())

    def calendar_edge(self, key: str) -> None:
        """A calendar moment has come: look at the schedules afresh (the log says what changed)."""
        self.pacing.refresh(self.clock.now(), force=True)

    def may_claim(self) -> bool:
        return self.breaker.may_claim()

    def others_alive(self) -> bool:
        """Whether another worker's heartbeat says it is running (so its leases are live steps)."""
        now = self.clock.now()
        heard = self.store.workers(since=now - timedelta(seconds=3 * self.renew_every + self.poll_interval_s))
        return any(w.worker_id != self.worker_id and w.stopped_at is None and w.alive_until > now for w in heard)

    def settled(self) -> bool:
        return settlement.settled(self.store, self.in_flight())

    # ---- the reconciler (run by the loop's reconcile job) ----------------------------------

    @property
    def reconcile_every_s(self) -> float:
        return self.reconciler.interval_s if self.reconciler is not None else 0.0

    def reconcile_due(self) -> bool:
        """Whether to try a reconciler run now (cheap: no database; the lease decides)."""
        if self.reconciler is None or self._closing or self._reconcile_lock.locked():
            return False
        return self._next_reconcile_at is None or self.clock.now() >= self._next_reconcile_at

    def reconcile(self) -> None:
        """Run the reconciler if no worker ran it within its interval and none runs it now."""
        if self.reconciler is None or not self._reconcile_lock.acquire(blocking=False):
            return
        retry_at = self.clock.now() + timedelta(seconds=min(self.reconcile_every_s, 60.0))
        try:
            self._next_reconcile_at = retry_at  # should the run fail: not again at every poll
            self.reconciler.run_if_due()
            self._next_reconcile_at = self.reconciler.next_due()
        finally:
            self._reconcile_lock.release()

    # ---- alerts (run by the loop's alerts job) -----------------------------------------------

    @property
    def alerts_every_s(self) -> float:
        return self.alerts.interval_s if self.alerts is not None else 0.0

    def alerts_due(self) -> bool:
        if self.alerts is None or self._closing or self._alerts_lock.locked():
            return False
        return self._next_alerts_at is None or self.clock.now() >= self._next_alerts_at

    def run_alerts(self) -> None:
        """Produce, digest and send alerts if no worker did within the interval and none does now."""
        if self.alerts is None or not self._alerts_lock.acquire(blocking=False):
            return
        try:
            self._next_alerts_at = self.clock.now() + timedelta(seconds=min(self.alerts_every_s, 60.0))
            self.alerts.run_if_due()
            self._next_alerts_at = self.alerts.next_due()
        finally:
            self._alerts_lock.release()

    def _circuit_changed(self, state: str, reason: str) -> None:
        """The breaker changed: say so in `status`; an opening is an alert."""
        self.heartbeat()
        if state == "open":
            try:
                circuit_opened(self.store, worker_id=self.worker_id, reason=reason, at=self.clock.now())
            except StoreError as exc:
                log.warning(f"circuit alert not recorded: {exc}", extra={"action": "alert_failed"})

    @property
    def closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        """Stop claiming; let running steps finish and record their outcome (their leases still
        renewed meanwhile); stop the loop's jobs; say so in `status`."""
        if self._closing:
            return
        self._closing = True
        if self.reconciler is not None:
            self.reconciler.cancel()  # a run under way stops after its current party
        with self._tick_lock:  # a claim under way hands its rows to the pool before it closes
            pass
        self._pool.shutdown(wait=True)
        self._recorder.close()
        if self._loop is not None:
            self._loop.shutdown()
        if self._owns_handoff and self.handoff is not None:
            self.handoff.close()
        if self._owns_network and self.network is not None:
            self.network.close()
        if self._lookups is not None:
            self._lookups.close()
        if self.reconciler is not None:
            self.reconciler.close()
        self.heartbeat(stopped=True)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
