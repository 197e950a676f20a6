"""The worker's loop: APScheduler runs its periodic jobs, and nothing else claims.

    Loop.run() ── APScheduler (memory job store, this process only) runs two jobs:
      │
      ├─ claim job: every worker.poll_interval_s, and woken at once when the recorder frees
      │    slots (``wake_claim``)
      │     worker.tick(): claim up to the free slots and start the steps
      │     nothing started, nothing in flight here:
      │       until_settled and nothing can progress without outside help ──► stop
      │       until_idle: nothing leased, due or scheduled ──► stop
      │                   only later work ──► clock.skip_to(its time) (a ManualClock jumps)
      │                   leases nobody renews (a crashed step's, a dead worker's) ──►
      │                     clock.skip_to(now + lease_s), when they have run out
      │                   another live worker's leases ──► wait for it (real time)
      │
      ├─ renew job: every lease_s / 3 of the engine's clock: renew the running steps' leases;
      │             heartbeat (also woken by the claim job when a ManualClock has jumped)
      │
      ├─ calendar jobs (one date job per scheduled batch): at the next moment the batch's gate
      │             may decide differently (its window opens or closes, a new hour's or day's wave
      │             begins; ``engine/pacing.py``), computed from the schedule after every claim
      │             round, so a changed schedule re-plans them: the worker looks at the schedules
      │             afresh (and logs "window opened for batch X"), then the claim job is woken
      │
      ├─ alerts job (a service run only, alerts.interval_s > 0): produce, digest and send the
      │             alerts (engine/alerts.py), on the worker that holds the ``alerts`` job's lease
      └─ reconcile job (a service run only: not with until_idle or until_settled, and only when
                    the worker has a reconciler, reconciler.interval_s > 0): at start, then
                    woken by the claim job when the engine's clock says a run is due; the
                    reconciler's lease decides which worker runs it (engine/reconciler.py)

The same loop runs in production (``peppol-migrate run``), the demo, the benchmark and the
tests (a ManualClock and ``until_idle``). ``until_idle`` drains: it also waits for every poll the
engine has scheduled, outbound takeover polls included (up to ``keys.ttl_h``). The command
line's ``run --until-settled`` stops earlier, when nothing can progress without outside help
(``settlement.py``). A wake that finds the claim job running makes it
claim once more rather than start a second one, and at most one wake travels through the
scheduler at a time. The claim job runs on the scheduler's own thread, so a wake costs one
thread switch; never on the recorder's thread, which only records (claiming there cost
throughput in the benchmark). APScheduler schedules on the wall clock; every decision about
migrations (due rows, leases, skipping ahead, windows) uses the engine's injected clock. So a
calendar job runs at the wall time that is as far ahead as the moment is on the engine's clock
(a date trigger, not a cron trigger in the batch's time zone: the engine's clock may be the
database's, or a test's ManualClock that jumps); the claim round, not the job, decides what to
start, from the schedule and the database, so a late or lost job costs a poll, never a cap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.executors.debug import DebugExecutor
from apscheduler.executors.pool import ThreadPoolExecutor as JobExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from migration_engine.clock import Clock
from migration_engine.store import WorkSummary

log = logging.getLogger("migration_engine.engine.loop")

_CLAIM, _RENEW, _RECONCILE, _ALERTS = "claim", "renew", "reconcile", "alerts"
_CALENDAR = "calendar:"  # + batch name: a batch's next window or wave moment
# The reconcile job also runs on its own this often (wall clock), should no claim round wake it.
_RECONCILE_CHECK_S = 60.0
# A wake may reach the scheduler while the job it wakes is still returning: a few instances
# are allowed, so APScheduler never skips a run with a "maximum number of running instances"
# warning; our own flags coalesce them (a wake during a claim makes that claim go once more).
_INSTANCES = 4


class Driven(Protocol):
    """What the loop drives: one worker (``engine.worker.Worker``)."""

    clock: Clock
    poll_interval_s: float
    renew_every: float
    lease_s: float

    @property
    def closing(self) -> bool: ...

    def tick(self) -> int: ...

    def in_flight(self) -> int: ...

    def renew_leases(self) -> None: ...

    def renewal_due(self) -> bool: ...

    def heartbeat(self) -> None: ...

    def work_summary(self) -> WorkSummary: ...

    def may_claim(self) -> bool: ...

    def others_alive(self) -> bool: ...

    def settled(self) -> bool: ...

    @property
    def reconcile_every_s(self) -> float: ...  # 0: no reconciler

    def reconcile_due(self) -> bool: ...

    def reconcile(self) -> None: ...

    @property
    def alerts_every_s(self) -> float: ...  # 0: no alerts

    def alerts_due(self) -> bool: ...

    def run_alerts(self) -> None: ...

    def calendar(self) -> Mapping[str, datetime]: ...  # key -> the next moment (engine clock)

    def calendar_edge(self, key: str) -> None: ...


def _scheduler_now() -> datetime:
    """A run time for APScheduler, which schedules on the wall clock."""
    return datetime.now(UTC)


class Loop:
    """One run of one worker; ``run`` blocks until stopped or, with ``until_idle``, idle, or, with
    ``until_settled``, settled (``settlement.py``: nothing can progress without outside help)."""

    def __init__(
        self, worker: Driven, *, until_idle: bool, stop: threading.Event | None, until_settled: bool = False
    ) -> None:
        self._worker = worker
        self._until_idle = until_idle
        self._until_settled = until_settled
        self.settled = False  # set when the settle policy, not ``stop``, ended the run
        self._stop = stop or threading.Event()
        self._wake_lock = threading.Lock()
        self._claiming = False  # a claim job is running
        self._claim_again = False  # ... and was woken meanwhile: it claims once more
        self._claim_woken = False  # a wake is on its way through the scheduler
        self._renew_woken = False
        self._scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},
            # The claim job runs on the scheduler's own thread ("debug": called directly, not
            # handed to a pool), so a wake costs one thread switch, as a dedicated claiming
            # thread would; the renew job's database writes go to a pool, off that thread.
            executors={"default": JobExecutor(3), _CLAIM: DebugExecutor()},
            job_defaults={"coalesce": True, "max_instances": _INSTANCES, "misfire_grace_time": None},
            timezone=UTC,
        )
        self._scheduler.add_job(
            self._claim_job,
            "interval",
            seconds=worker.poll_interval_s,
            id=_CLAIM,
            executor=_CLAIM,
            next_run_time=_scheduler_now(),
        )
        self._scheduler.add_job(self._renew_job, "interval", seconds=worker.renew_every, id=_RENEW)
        # A drain (until_idle, until_settled) does not reconcile: `peppol-migrate reconcile` does.
        self._reconciles = worker.reconcile_every_s > 0 and not (until_idle or until_settled)
        if self._reconciles:
            self._scheduler.add_job(
                self._reconcile_job,
                "interval",
                seconds=min(worker.reconcile_every_s, _RECONCILE_CHECK_S),
                id=_RECONCILE,
                next_run_time=_scheduler_now(),
            )
        # Alerts (engine/alerts.py): like the reconciler, a service run only; the job's lease decides
        # which worker produces and sends them.
        self._alerts = worker.alerts_every_s > 0 and not (until_idle or until_settled)
        if self._alerts:
            self._scheduler.add_job(
                self._alerts_job,
                "interval",
                seconds=min(worker.alerts_every_s, _RECONCILE_CHECK_S),
                id=_ALERTS,
                next_run_time=_scheduler_now(),
            )
        self._calendar: dict[str, datetime] = {}  # the planned calendar jobs (engine clock)
        self._running = False

    def run(self) -> None:
        """Start the jobs and wait until ``stop`` is set or the worker closes."""
        self._worker.heartbeat()
        self._running = True
        self._scheduler.start()
        # A timeout, so a signal handler gets to run, and a close() from elsewhere ends the wait.
        while not self._stop.wait(timeout=1.0) and not self._worker.closing:
            pass

    def shutdown(self) -> None:
        """Stop the jobs (the worker calls this from ``close``, after its steps have finished)."""
        if self._running:
            self._running = False
            self._scheduler.shutdown(wait=True)

    # ---- claiming -----------------------------------------------------------------------

    def _claim_job(self) -> None:
        """The claim job: claim rounds until none asks for another right away."""
        with self._wake_lock:
            self._claim_woken = False
            if self._claiming:  # another instance is claiming: it claims once more instead
                self._claim_again = True
                return
            self._claiming = True
        again = True
        while again:
            again = self._claim_round()
            with self._wake_lock:
                again = (again or self._claim_again) and not (self._worker.closing or self._stop.is_set())
                self._claim_again = False
                if not again:
                    self._claiming = False

    def _claim_round(self) -> bool:
        """Claim; with until_idle and nothing in flight here, stop or skip ahead. True: claim
        again at once (the clock has moved to the next due migration)."""
        worker = self._worker
        try:
            started = worker.tick()
            self._plan_calendar()
            if worker.renewal_due():
                self._wake_renew()  # the engine's clock has moved on (a ManualClock may jump)
            if self._reconciles and worker.reconcile_due():
                self._modify(_RECONCILE)
            if self._alerts and worker.alerts_due():
                self._modify(_ALERTS)
            if started or worker.in_flight():
                return False
            if self._until_settled and worker.settled():
                log.info("settled: nothing can progress without outside help", extra={"action": "settled"})
                self.settled = True
                self._stop.set()
                return False
            return self._idle_round() if self._until_idle else False
        except Exception:  # a database hiccup: the next poll claims again
            log.exception("claiming failed; trying again at the next poll", extra={"action": "tick_failed"})
            return False

    def _idle_round(self) -> bool:
        """Nothing in flight here: stop, or skip the clock to the first moment work can go on.

        A row leased while nothing runs here is another live worker's step (its own worker ends
        it, in real time: wait) or an orphan: a step of ours that crashed or whose outcome could
        not be stored, or a worker that died. Nobody renews an orphan's lease; it runs out within
        ``lease_s``, and only then can the row be claimed again. So with no other worker alive
        the clock skips there (a ManualClock jumps; the real clock gets there on its own).
        """
        worker = self._worker
        summary = worker.work_summary()
        now = worker.clock.now()
        targets: list[datetime] = []
        if summary.due_now:
            if worker.may_claim():
                return False  # they became due after the claim: the next poll takes them
            # The open circuit holds them back: let its cool-down pass, a second at a time.
            targets.append(now + timedelta(seconds=max(1.0, worker.poll_interval_s)))
        if summary.scheduled_later and summary.next_run_at is not None:
            targets.append(summary.next_run_at)  # nothing happens before it
        if summary.leased:
            if worker.others_alive():
                return False  # another worker's steps: it ends them, in real time
            targets.append(now + timedelta(seconds=worker.lease_s))  # orphaned leases have run out
        if not targets:
            self._stop.set()  # nothing in flight, leased, due or scheduled: idle
            return False
        target = min(targets)
        worker.clock.skip_to(target)
        return worker.clock.now() >= target  # a real clock did not move: look again at the next poll

    def wake_claim(self) -> None:
        """Run the claim job now (or once more, if it is running). Cheap: at most one wake
        travels through the scheduler at a time."""
        if not self._running or self._worker.closing:
            return
        with self._wake_lock:
            if self._claiming:
                self._claim_again = True
                return
            if self._claim_woken:
                return
            self._claim_woken = True
        self._modify(_CLAIM)

    # ---- renewing -----------------------------------------------------------------------

    def _renew_job(self) -> None:
        self._renew_woken = False
        try:
            self._worker.renew_leases()
        except Exception:  # a database hiccup: the leases are renewed at the next run
            log.exception("renewing the leases failed", extra={"action": "renew_failed"})

    def _wake_renew(self) -> None:
        if not self._running or self._worker.closing:
            return
        with self._wake_lock:
            if self._renew_woken:
                return
            self._renew_woken = True
        self._modify(_RENEW)

    # ---- reconciling --------------------------------------------------------------------

    def _reconcile_job(self) -> None:
        try:
            if self._worker.reconcile_due():
                self._worker.reconcile()
        except Exception:  # a database or network hiccup: the next due run tries again
            log.exception("the reconciler failed", extra={"action": "reconcile_failed"})

    # ---- alerts -------------------------------------------------------------------------

    def _alerts_job(self) -> None:
        try:
            if self._worker.alerts_due():
                self._worker.run_alerts()
        except Exception:  # a database hiccup or a receiver down: the next due run tries again
            log.exception("the alerts run failed", extra={"action": "alerts_failed"})

    # ---- the calendar -------------------------------------------------------------------

    def _plan_calendar(self) -> None:
        """(Re)plan one date job per batch at its next calendar moment, when that has changed."""
        plan = dict(self._worker.calendar())
        with self._wake_lock:
            if plan == self._calendar or not self._running:
                return
            before, self._calendar = self._calendar, plan
        engine_now, wall_now = self._worker.clock.now(), _scheduler_now()
        for key in before.keys() - plan.keys():
            self._remove(_CALENDAR + key)
        for key, when in plan.items():
            if before.get(key) == when:
                continue
            run_at = wall_now + max(timedelta(0), when - engine_now)
            self._scheduler.add_job(
                self._calendar_job, "date", run_date=run_at, args=[key], id=_CALENDAR + key, replace_existing=True
            )

    def _calendar_job(self, key: str) -> None:
        try:
            self._worker.calendar_edge(key)
        except Exception:  # a database hiccup: the claim rounds look at the schedules anyway
            log.exception("the calendar job failed", extra={"action": "calendar_failed"})
        with self._wake_lock:
            self._calendar.pop(key, None)  # fired: the next claim round plans the next one
        self.wake_claim()

    def _remove(self, job_id: str) -> None:
        try:
            self._scheduler.remove_job(job_id)
        except Exception:  # already fired, or shut down meanwhile
            log.debug("could not remove the %s job", job_id, exc_info=True)

    def _modify(self, job_id: str) -> None:
        try:
            self._scheduler.modify_job(job_id, next_run_time=_scheduler_now())
        except Exception:  # shut down meanwhile: the loop is ending
            log.debug("could not wake the %s job", job_id, exc_info=True)
