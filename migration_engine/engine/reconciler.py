"""The reconciler: compares open and recently completed migrations with the network and the PSB.

A run pages through the migrations that are open or completed within
``reconciler.recent_days`` (id order, ``PAGE`` at a time), asks the network where each party
is now (one snapshot without ServiceMetadata or business card, through the lookups' own rate
limits and retries), asks the PSB for the party's configuration when the SML points at
eConnect, and applies the rules of ``reconciler_checks``: ``key_unused``,
``sml_without_config``, ``third_provider``, ``not_served``.

Each finding is recorded once: a ``finding`` audit event (actor ``reconciler``) appended to
the migration's chain without moving it, and its row in the store's findings (what `status`
shows). It is recorded again only when what was seen changes, or when it is still open
``reconciler.realert_h`` after it was last recorded (0: never again); a finding no longer seen
is recorded as ``cleared``, and so are the open findings of migrations the reconciler stops
looking at (cancelled, or completed longer ago than the window). A kind that could not be
decided (a lookup or PSB call failed) keeps its state until the next run.

One run at a time per database: a run holds the ``reconciler`` job's lease (store/jobs.py),
renewed after each page. The worker's loop runs it every ``reconciler.interval_s`` on
whichever worker gets the lease first (``run_if_due``); ``peppol-migrate reconcile`` runs it
at once (``run_once``). ``on_finding`` is told of every recorded finding (for alerts).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from migration_engine.clock import Clock
from migration_engine.engine.reconciler_checks import Observation, check
from migration_engine.errors import PeppolMigrateError
from migration_engine.machine import Direction, State
from migration_engine.peppol.snapshot import TECHNICAL_FAILURE, PartySnapshot
from migration_engine.settings import Settings
from migration_engine.store import EventIn, MigrationRecord, Store
from migration_engine.store.findings import CLEARED, OPEN, FindingState, FindingWrite

log = logging.getLogger("migration_engine.engine.reconciler")

ACTOR = "reconciler"
JOB = "reconciler"
PAGE = 200  # migrations read (and findings written) per transaction
LEASE_S = 600.0  # a run's lease, renewed after every page


class Lookups(Protocol):
    """What the reconciler asks the network (``peppol.snapshots.NetworkLookups``)."""

    def snapshot(
        self, party_id: str, *, metadata: bool = True, business_card: bool = True, fresh: bool = False
    ) -> PartySnapshot: ...


class PartyConfigs(Protocol):
    """What the reconciler asks the PSB (``psb.client.PsbClient``)."""

    def get_party_config(self, party_id: str) -> dict[str, Any] | None: ...


class ReconcilerBusy(PeppolMigrateError):
    """Another reconciler run holds the lease (exit 1: try again when it has finished)."""


@dataclass(frozen=True)
class Finding:
    """One finding of a run: open (seen now) or cleared (no longer seen)."""

    migration_id: int
    party_id: str
    direction: Direction
    state: State
    batch_name: str | None
    kind: str
    status: str  # open | cleared
    change: str  # new | changed | again | unchanged | cleared
    summary: str
    action: str
    seen: Mapping[str, Any] = field(default_factory=dict)

    @property
    def recorded(self) -> bool:
        """Written to the audit trail by this run."""
        return self.change != "unchanged"

    def as_dict(self) -> dict[str, Any]:
        return {
            "migration_id": self.migration_id,
            "party_id": self.party_id,
            "direction": self.direction.value,
            "state": self.state.value,
            "batch": self.batch_name,
            "kind": self.kind,
            "status": self.status,
            "change": self.change,
            "summary": self.summary,
            "action": self.action,
            "seen": dict(self.seen),
        }


@dataclass
class RunStats:
    """What the last run did, for the CLI and the logs."""

    checked: int = 0
    lookups_failed: int = 0
    recorded: int = 0
    open: int = 0
    cleared: int = 0
    stopped_early: bool = False


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class Reconciler:
    """One database's reconciler; ``network`` None: only ``key_unused`` is checked (no
    ``verify.econnect_smp_host`` to tell eConnect's SMP by)."""

    def __init__(
        self,
        *,
        store: Store,
        psb: PartyConfigs,
        network: Lookups | None,
        settings: Settings,
        clock: Clock,
        owner: str | None = None,
        on_finding: Callable[[Finding], None] | None = None,
        on_run: Callable[[RunStats], None] | None = None,
        page_size: int = PAGE,
    ) -> None:
        self.store = store
        self.psb = psb
        self.network = network
        self.settings = settings.reconciler
        self.clock = clock
        self.owner = owner or default_owner()
        self.on_finding = on_finding
        self.on_run = on_run
        self.page_size = page_size
        self.interval_s = self.settings.interval_s
        self.last_run = RunStats()
        self._cancel = threading.Event()

    # ---- running ----------------------------------------------------------------------------

    def run_once(self, *, batch_name: str | None = None) -> list[Finding]:
        """Run now, whenever the last run was; ``ReconcilerBusy`` when another run holds the lease."""
        if not self.store.start_job(JOB, owner=self.owner, lease_s=LEASE_S, every_s=0, force=True):
            run = self.store.job_run(JOB)
            who = f" ({run.owner}, lease until {run.lease_until:%Y-%m-%d %H:%M:%S} UTC)" if run and run.owner else ""
            raise ReconcilerBusy(f"another reconciler run is under way{who}: try again when it has finished")
        return self._run_leased(batch_name)

    def run_if_due(self) -> list[Finding] | None:
        """Run when ``interval_s`` has passed since the last run's end (on any worker) and no run
        holds the lease; None when not run."""
        if self.interval_s <= 0:
            return None
        if not self.store.start_job(JOB, owner=self.owner, lease_s=LEASE_S, every_s=self.interval_s):
            return None
        return self._run_leased(None)

    def next_due(self) -> datetime:
        """When to try ``run_if_due`` next: ``interval_s`` after the last run's end; while another
        worker runs it, a minute on (at most ``interval_s``); now when it never ran."""
        run = self.store.job_run(JOB)
        now = self.clock.now()
        if run is not None and run.held(now) and run.owner != self.owner:
            return now + timedelta(seconds=min(self.interval_s, 60.0))
        if run is None or run.finished_at is None:
            return now
        return max(now, run.finished_at + timedelta(seconds=self.interval_s))

    def close(self) -> None:
        """Close the network lookups' connections (when they have a ``close``)."""
        close = getattr(self.network, "close", None)
        if callable(close):
            close()

    def cancel(self) -> None:
        """Stop a run under way after the party it is looking at (the worker is closing)."""
        self._cancel.set()

    def _run_leased(self, batch_name: str | None) -> list[Finding]:
        try:
            found = self._run(batch_name)
        finally:
            self.store.finish_job(JOB, owner=self.owner)
        if self.on_run is not None:
            self.on_run(self.last_run)
        return found

    def _run(self, batch_name: str | None) -> list[Finding]:
        stats = self.last_run = RunStats()
        since = self.clock.now() - timedelta(days=self.settings.recent_days)
        results: list[Finding] = []
        after = 0
        while not self._cancel.is_set():
            page = self.store.watched_page(
                after_id=after, limit=self.page_size, completed_since=since, batch_name=batch_name
            )
            if not page:
                break
            results += self._page(page, stats)
            after = page[-1].id
            if len(page) < self.page_size:
                break
            if not self.store.renew_job(JOB, owner=self.owner, lease_s=LEASE_S):
                log.warning("the reconciler lost its lease; stopping this run", extra={"action": "reconcile_lost"})
                stats.stopped_early = True
                return results
        if self._cancel.is_set():
            stats.stopped_early = True
            return results
        results += self._clear_unwatched(since, batch_name, stats)
        log.info(
            "reconciled %d migrations: %d open findings, %d recorded, %d cleared, %d lookups failed",
            stats.checked, stats.open, stats.recorded, stats.cleared, stats.lookups_failed,
            extra={"action": "reconciled"},
        )
        return results

    def _page(self, page: Sequence[MigrationRecord], stats: RunStats) -> list[Finding]:
        stored = self.store.findings_of([r.id for r in page])
        found: list[Finding] = []
        writes: list[FindingWrite] = []
        for record in page:
            if self._cancel.is_set():
                break
            stats.checked += 1
            snap = self._look(record.party_id)
            if snap is not None and snap.lookup == TECHNICAL_FAILURE:
                stats.lookups_failed += 1
            observations = check(
                record,
                snap,
                lambda pid=record.party_id: self.psb.get_party_config(pid),  # type: ignore[misc]
                now=self.clock.now(),
                key_unused_after=timedelta(hours=self.settings.key_unused_h),
            )
            for obs in observations:
                finding = self._decide(record, obs, stored.get(record.id, {}).get(obs.kind))
                if finding is None:
                    continue
                found.append(finding)
                if finding.recorded:
                    writes.append(self._write(finding))
        self._record(writes, found, stats)
        return found

    def _look(self, party_id: str) -> PartySnapshot | None:
        if self.network is None:
            return None
        return self.network.snapshot(party_id, metadata=False, business_card=False, fresh=True)

    # ---- deciding what to record ----------------------------------------------------------

    def _decide(self, record: MigrationRecord, obs: Observation, before: FindingState | None) -> Finding | None:
        """The finding to report (and whether to record it), or None when nothing is open or changes."""
        if not obs.present:
            if before is None or before.status != OPEN:
                return None
            return self._finding(record, obs.kind, CLEARED, "cleared", f"no longer seen: {before.summary}", "none")
        if before is None or before.status != OPEN:
            change = "new"
        elif before.signature != obs.signature:
            change = "changed"
        elif self.settings.realert_h > 0 and self.clock.now() - before.recorded_at >= timedelta(
            hours=self.settings.realert_h
        ):
            change = "again"
        else:
            change = "unchanged"
        return self._finding(record, obs.kind, OPEN, change, obs.summary, obs.action, obs.seen)

    @staticmethod
    def _finding(
        record: MigrationRecord,
        kind: str,
        status: str,
        change: str,
        summary: str,
        action: str,
        seen: Mapping[str, Any] | None = None,
    ) -> Finding:
        return Finding(
            migration_id=record.id,
            party_id=record.party_id,
            direction=record.direction,
            state=record.state,
            batch_name=record.batch_name,
            kind=kind,
            status=status,
            change=change,
            summary=summary,
            action=action,
            seen=dict(seen or {}),
        )

    @staticmethod
    def _write(finding: Finding) -> FindingWrite:
        signature = Observation(finding.kind, True, finding.seen).signature if finding.status == OPEN else ""
        detail = {
            "finding": finding.kind,
            "status": finding.status,
            "change": finding.change,
            "state": finding.state.value,
            "summary": finding.summary,
            "action": finding.action,
            "seen": dict(finding.seen),
        }
        return FindingWrite(
            migration_id=finding.migration_id,
            kind=finding.kind,
            status=finding.status,
            signature=signature,
            summary=finding.summary,
            event=EventIn(kind="finding", actor=ACTOR, detail=detail),
        )

    def _record(self, writes: list[FindingWrite], found: list[Finding], stats: RunStats) -> None:
        self.store.record_findings(writes)
        for finding in found:
            if finding.status == OPEN:
                stats.open += 1
            else:
                stats.cleared += 1
            if not finding.recorded:
                continue
            stats.recorded += 1
            log.info(
                "finding %s %s for %s (%s %s): %s",
                finding.kind, finding.change, finding.party_id, finding.direction.value, finding.state.value,
                finding.summary,
                extra={"action": "finding", "party_id": finding.party_id, "finding": finding.kind},
            )
            if self.on_finding is not None:
                try:
                    self.on_finding(finding)
                except Exception:  # an alert that fails must not stop the run
                    log.exception("a finding's alert failed", extra={"action": "finding_alert_failed"})

    def _clear_unwatched(self, since: datetime, batch_name: str | None, stats: RunStats) -> list[Finding]:
        """Clear the open findings of migrations no longer looked at (cancelled, or completed
        before the window): they would otherwise stay open in `status` for ever."""
        stale = self.store.unwatched_open_findings(completed_since=since, batch_name=batch_name)
        if not stale:
            return []
        found: list[Finding] = []
        for state in stale:
            record = self.store.get(state.migration_id)
            if record is None:
                continue
            why = "cancelled" if record.state is State.CANCELLED else "completed before the reconciler's window"
            found.append(
                self._finding(
                    record, state.kind, CLEARED, "cleared", f"no longer checked ({why}): {state.summary}", "none"
                )
            )
        self._record([self._write(f) for f in found], found, stats)
        return found
