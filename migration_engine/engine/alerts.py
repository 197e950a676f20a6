"""Alerts: from the database to webhooks and e-mail, through a durable outbox, in digests.

    run (one worker at a time: the ``alerts`` job's lease, store/jobs.py)
     ├─ produce: the audit events after the cursor ──► alerts (same transaction moves the cursor)
     │     a move into needs_attention, key_rejected, key_expired; an open reconciler finding;
     │     the last migration of a batch reaching a terminal state (batch_completed)
     │   raised directly, not from the trail: circuit_open (the worker's breaker opens),
     │     audit_verify_failed (`audit verify` or the console finds the trail broken)
     ├─ digest: the waiting alerts of one digest key (kind and batch) whose first alert is
     │     ``alerts.digest_s`` old ──► one message (count, the first ``digest_items`` parties,
     │     the console's page), a pending delivery per destination
     └─ send: each due delivery ──► its webhook (signed, alerts_send.py) or e-mail; a failure is
           tried again after retry_base_s, doubling up to retry_max_s; never given up

The database is the truth: nothing is kept in memory between runs, so a worker restart
neither loses nor repeats an alert; a message is re-sent only when its receiver did not say
2xx (at least once; a receiver drops a repeat by the ``X-Peppol-Migrate-Delivery`` id).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from migration_engine.clock import Clock
from migration_engine.engine.alerts_send import Senders
from migration_engine.machine import TERMINAL_STATES, State
from migration_engine.settings import Settings
from migration_engine.store import Store
from migration_engine.store.alerts import AlertIn, AlertRow, SourceEvent

log = logging.getLogger("migration_engine.engine.alerts")

JOB = "alerts"
LEASE_S = 300.0
PAGE = 5000  # audit event ids read per producer transaction
SETTLE_S = 30.0  # a gap in the audit ids younger than this may still commit (store/alerts.py)
SEND_PAGE = 100

NEEDS_ATTENTION = "needs_attention"
KEY_REJECTED = "key_rejected"
KEY_EXPIRED = "key_expired"
BATCH_COMPLETED = "batch_completed"
CIRCUIT_OPEN = "circuit_open"
AUDIT_VERIFY_FAILED = "audit_verify_failed"
FINDING = "finding"
KINDS = (NEEDS_ATTENTION, KEY_REJECTED, KEY_EXPIRED, BATCH_COMPLETED, CIRCUIT_OPEN, AUDIT_VERIFY_FAILED, FINDING)

_STATE_KINDS = {State.NEEDS_ATTENTION.value: NEEDS_ATTENTION, State.KEY_REJECTED.value: KEY_REJECTED,
                State.KEY_EXPIRED.value: KEY_EXPIRED}  # fmt: skip
_TERMINAL = frozenset(s.value for s in TERMINAL_STATES)
_TITLES = {
    NEEDS_ATTENTION: "{n} part{ies} need{s} attention",
    KEY_REJECTED: "{n} part{ies}' key{keys} rejected by the PSB",
    KEY_EXPIRED: "{n} part{ies}' key{keys} expired before a takeover",
    BATCH_COMPLETED: "{n} batch{es} completed",
    CIRCUIT_OPEN: "the circuit breaker opened {n} time{times}",
    AUDIT_VERIFY_FAILED: "audit verify failed {n} time{times}",
    FINDING: "{n} reconciler finding{findings}",
}
# The console's pages a message links to (docs/console.md).
# The console's pages (migration_engine/console/pages.py): the queue, one batch, the audit.
_ATTENTION_PATH = "/attention"
_BATCH_PATH = "/batch?name="
_AUDIT_PATH = "/audit"


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class RunStats:
    """What one run did."""

    produced: int = 0
    messages: int = 0
    delivered: int = 0
    failed: int = 0


class Alerts:
    """One database's alert pipeline (produce, digest, send) under the ``alerts`` job's lease."""

    def __init__(self, *, store: Store, settings: Settings, clock: Clock, owner: str | None = None) -> None:
        self.store = store
        self.tables = store.alerts
        self.settings = settings.alerts
        self.clock = clock
        self.owner = owner or default_owner()
        self.senders = Senders(self.settings)
        self.interval_s = self.settings.interval_s
        self.last_run = RunStats()

    # ---- running ----------------------------------------------------------------------------

    def run_once(self) -> RunStats | None:
        """Run now, whenever the last run was; None when another run holds the lease."""
        if not self.store.start_job(JOB, owner=self.owner, lease_s=LEASE_S, every_s=0, force=True):
            return None
        return self._run_leased()

    def run_if_due(self) -> RunStats | None:
        """Run when ``interval_s`` has passed since the last run (on any worker); None when not run."""
        if self.interval_s <= 0:
            return None
        if not self.store.start_job(JOB, owner=self.owner, lease_s=LEASE_S, every_s=self.interval_s):
            return None
        return self._run_leased()

    def next_due(self) -> datetime:
        """When to try ``run_if_due`` next."""
        run = self.store.job_run(JOB)
        now = self.clock.now()
        if run is None or run.finished_at is None:
            return now
        return max(now, run.finished_at + timedelta(seconds=self.interval_s))

    def _run_leased(self) -> RunStats:
        stats = self.last_run = RunStats()
        try:
            stats.produced = self.produce()
            stats.messages = self.digest()
            stats.delivered, stats.failed = self.send()
        finally:
            self.store.finish_job(JOB, owner=self.owner)
        if stats.produced or stats.messages or stats.delivered or stats.failed:
            log.info(
                "alerts: %d produced, %d messages made, %d delivered, %d deliveries failed",
                stats.produced, stats.messages, stats.delivered, stats.failed,
                extra={"action": "alerts_run"},
            )
        return stats

    # ---- producing --------------------------------------------------------------------------

    def produce(self) -> int:
        """Turn the audit events after the cursor into alerts; how many."""
        produced = 0
        while True:
            before = self.tables.cursor()
            events, upto = self.tables.events_after(
                before, limit=PAGE, settle_s=SETTLE_S, to_states=[*_STATE_KINDS, *_TERMINAL], kinds=[FINDING]
            )
            if upto == before:
                return produced
            found = [a for e in events if (a := _alert_of(e)) is not None]
            finished = {e.batch_id: e for e in events if e.to_state in _TERMINAL and e.batch_id is not None}
            for batch_id, event in finished.items():
                counts = self.tables.batch_finished(batch_id, after=before, upto=upto)
                if counts is not None:
                    found.append(_batch_completed(event, counts))
            if not self.tables.advance(before=before, upto=upto, found=found):
                return produced  # another producer moved the cursor: it has these
            produced += len(found)

    # ---- digests ----------------------------------------------------------------------------

    def digest(self) -> int:
        """Make a message of each digest whose window has closed; how many."""
        now = self.clock.now()
        window = timedelta(seconds=self.settings.digest_s)
        made = 0
        for group in self.tables.pending_groups():
            if now < group.first_created_at + window:
                continue
            if self.tables.make_message(group.digest_key, build=self._body, destinations=self.senders.destinations):
                made += 1
        return made

    def _body(self, members: list[AlertRow]) -> tuple[str, dict[str, Any]]:
        return message_body(members, first=self.settings.digest_items, console_url=self.settings.console_url)

    # ---- sending ----------------------------------------------------------------------------

    def send(self) -> tuple[int, int]:
        """Send every due delivery; a destination that fails is left alone for the rest of the run."""
        ok = failed = 0
        down: set[str] = set()
        while True:
            live = [d for d in self.senders.destinations if d not in down]
            if not live:
                break
            due = self.tables.due_deliveries(destinations=live, limit=SEND_PAGE)
            if not due:
                break
            for delivery in due:
                if delivery.destination in down:
                    continue
                result = self.senders.send(
                    delivery.destination, uid=delivery.uid, kind=delivery.kind, payload=delivery.payload,
                    timestamp=int(self.clock.now().timestamp()),
                )
                if result.ok:
                    self.tables.delivered(delivery)
                    ok += 1
                    continue
                failed += 1
                down.add(delivery.destination)
                retry_in = min(self.settings.retry_max_s, self.settings.retry_base_s * 2 ** min(delivery.attempts, 30))
                self.tables.failed(delivery, error=result.error, retry_in_s=retry_in)
                log.warning(
                    "alert %s to %s failed (attempt %d): %s; trying again in %.0f s",
                    delivery.uid, self.senders.label(delivery.destination), delivery.attempts + 1, result.error,
                    retry_in, extra={"action": "alert_failed"},
                )
        return ok, failed


# ---- what becomes an alert -----------------------------------------------------------------


def _alert_of(e: SourceEvent) -> AlertIn | None:
    batch = e.batch_name
    if e.kind == FINDING:
        if e.detail.get("status") != "open" or e.detail.get("change") not in ("new", "changed", "again"):
            return None
        summary = f"{e.detail.get('finding', 'finding')}: {e.detail.get('summary', '')}"
        return AlertIn(FINDING, f"{FINDING}:{batch or '-'}", summary[:500], e.at, batch, e.party_id,
                       e.migration_id, e.id)  # fmt: skip
    kind = _STATE_KINDS.get(e.to_state or "")
    if kind is None or e.from_state == e.to_state:
        return None
    why = e.detail.get("error") or e.detail.get("reason") or e.detail.get("note") or ""
    summary = f"{e.from_state or '-'} -> {e.to_state}" + (f": {why}" if why else "")
    return AlertIn(kind, f"{kind}:{batch or '-'}", str(summary)[:500], e.at, batch, e.party_id, e.migration_id, e.id)


def _batch_completed(e: SourceEvent, counts: dict[str, int]) -> AlertIn:
    figures = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    return AlertIn(BATCH_COMPLETED, f"{BATCH_COMPLETED}:{e.batch_name}", f"batch {e.batch_name}: {figures}",
                   e.at, e.batch_name, None, None, e.id)  # fmt: skip


def message_body(members: Sequence[AlertRow], *, first: int, console_url: str = "") -> tuple[str, dict[str, Any]]:
    """A digest's kind and JSON body: count, the first ``first`` alerts, a link to the console."""
    kind = members[0].kind
    batch = members[0].batch_name
    n = len(members)
    plural = n != 1
    title = _TITLES.get(kind, kind + " ({n})").format(
        n=n, ies="ies" if plural else "y", s="" if plural else "s", keys="s" if plural else "",
        es="es" if plural else "", times="s" if plural else "", findings="s" if plural else "",
    )
    if batch and kind != BATCH_COMPLETED:
        title += f" in batch {batch}"
    elif batch:
        title = f"batch {batch} completed"
    if kind in (NEEDS_ATTENTION, KEY_REJECTED, KEY_EXPIRED):
        # One batch's page filtered to the state, or the queue across batches.
        path = f"{_BATCH_PATH}{quote(batch)}&state={kind}" if batch else _ATTENTION_PATH
    elif kind == AUDIT_VERIFY_FAILED:
        path = _AUDIT_PATH
    elif batch:
        path = _BATCH_PATH + quote(batch)
    else:
        path = "/"
    items = [
        {"party_id": m.party_id, "migration_id": m.migration_id, "batch": m.batch_name, "summary": m.summary,
         "at": m.occurred_at.isoformat()}
        for m in members[:first]
    ]  # fmt: skip
    lines = [title + ":"] + [f"- {m.party_id + ': ' if m.party_id else ''}{m.summary}" for m in members[:first]]
    if n > first:
        lines.append(f"... and {n - first} more")
    link = console_url.rstrip("/") + path
    lines.append(f"console: {link}")
    body: dict[str, Any] = {
        "kind": kind,
        "title": title,
        "count": n,
        "batch": batch,
        "first_at": min(m.occurred_at for m in members).isoformat(),
        "last_at": max(m.occurred_at for m in members).isoformat(),
        "items": items,
        "more": max(0, n - first),
        "link": link,
        "text": "\n".join(lines),
    }
    return kind, body


# ---- raised directly ---------------------------------------------------------------------


def circuit_opened(store: Store, *, worker_id: str, reason: str, at: datetime) -> None:
    """The worker's circuit breaker opened (engine/worker.py calls this on the change)."""
    store.alerts.add([AlertIn(CIRCUIT_OPEN, CIRCUIT_OPEN, f"worker {worker_id}: {reason or 'opened'}"[:500], at)])


def audit_verify_failed(store: Store, *, broken: int, first: str, by: str, at: datetime) -> None:
    """`audit verify` (or the console's) found ``broken`` migrations whose chain does not verify."""
    summary = f"{broken} migration{'s' if broken != 1 else ''} broken (checked by {by}); first: {first}"
    store.alerts.add([AlertIn(AUDIT_VERIFY_FAILED, AUDIT_VERIFY_FAILED, summary[:500], at)])
