"""The snapshot a migration's receive parity is measured against (``docs/peppol-network.md``,
"Receive parity").

Taken by the worker, when none is stored, in the state whose step makes the first mutating
call (inbound ``key_issued``: the migration PUT; outbound ``requested``: prepareToMigrate),
before that step runs: the snapshot is its own change (a ``snapshot`` audit event, the state
kept, due again at once), so it is committed before anything changes at the PSB, and a crash
after the PUT can never replace what the old provider published by what eConnect publishes.
The steps after the takeover read it back (``stored``) from the migration's audit trail.

Only with ``verify.peppol_network`` on (the one switch for the worker's looks at the network)
and ``parity.snapshot`` not ``off``. A lookup that failed technically is retried like any
transient error (``retry.*``); when the retry policy gives up, ``required`` moves the
migration to needs_attention (code ``SNAPSHOT``), ``best_effort`` records the failed snapshot
and goes on without a baseline. A snapshot that found no service group (not registered, SMP
404 or garbage) is an answer, stored as it is; parity then has nothing to compare with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Protocol

from migration_engine.engine.changes import Actor, ChangeBuilder, stay
from migration_engine.engine.retry import GiveUp, RetryPolicy
from migration_engine.errors import NetworkLookupError, PsbTransientError
from migration_engine.machine import Direction, State
from migration_engine.peppol.snapshot import TECHNICAL_FAILURE, PartySnapshot
from migration_engine.settings import Settings
from migration_engine.store import AuditEvent, Change, MigrationRecord

# Where the first mutating call is made: a snapshot is taken before its step when none is stored.
TAKE_IN: frozenset[tuple[Direction, State]] = frozenset(
    {(Direction.TO_ECONNECT, State.KEY_ISSUED), (Direction.FROM_ECONNECT, State.REQUESTED)}
)
# The steps that read the snapshot back: configure, grant, verify; outbound cleanup.
READ_IN: frozenset[tuple[Direction, State]] = frozenset(
    {
        (Direction.TO_ECONNECT, State.TAKEN_OVER),
        (Direction.TO_ECONNECT, State.CAPABILITIES_CONFIGURED),
        (Direction.TO_ECONNECT, State.PERMISSIONS_SET),
        (Direction.FROM_ECONNECT, State.TAKEN_OVER),
    }
)
GAVE_UP = "best_effort"  # the extra key of a failed snapshot the migration went on without


class SnapshotSource(Protocol):
    """What takes a snapshot (``peppol.snapshots.NetworkLookups``)."""

    def snapshot(self, party_id: str) -> PartySnapshot: ...


class EventsReader(Protocol):
    """A migration's audit events in order (``Store.events``)."""

    def __call__(self, migration_id: int) -> Sequence[AuditEvent]: ...


def active(settings: Settings) -> bool:
    return settings.verify.peppol_network and settings.parity.snapshot != "off"


def stored(events: Sequence[AuditEvent]) -> tuple[PartySnapshot | None, bool]:
    """(the latest readable stored snapshot, whether one counts as taken).

    A ``technical_failure`` snapshot counts only when the worker went on without one
    (``best_effort``); one stored by someone else (a preflight) is asked again."""
    latest: PartySnapshot | None = None
    taken = False
    for event in events:
        if event.kind != "snapshot":
            continue
        try:
            snap = PartySnapshot.from_detail(event.detail)
        except (KeyError, TypeError, ValueError):
            continue  # an unreadable detail is no baseline
        latest = snap
        taken = taken or snap.lookup != TECHNICAL_FAILURE or GAVE_UP in snap.extra
    return latest, taken


class Baselines:
    """The worker's part: read the stored snapshot for a step, or take one first."""

    def __init__(
        self,
        *,
        settings: Settings,
        source: SnapshotSource | None,
        read_events: EventsReader,
        retry: RetryPolicy,
        changes: ChangeBuilder,
    ) -> None:
        self.settings = settings
        self.source = source
        self.read_events = read_events
        self.retry = retry
        self.changes = changes
        self._by = Actor.worker(changes.worker_id)

    def wanted(self, record: MigrationRecord) -> bool:
        where = (record.direction, record.state)
        return active(self.settings) and (where in TAKE_IN or where in READ_IN)

    def prepare(self, record: MigrationRecord, now: datetime) -> tuple[PartySnapshot | None, Change | None]:
        """(the snapshot the step sees, or a change to record instead of running the step)."""
        if not self.wanted(record):
            return None, None
        snap, taken = stored(self.read_events(record.id))
        if taken or (record.direction, record.state) not in TAKE_IN or self.source is None:
            return snap, None
        return None, self.take(record, now)

    def take(self, record: MigrationRecord, now: datetime) -> Change:
        """The snapshot as its own change, or a transient error (retried) when the look failed."""
        assert self.source is not None
        try:
            snap = self.source.snapshot(record.party_id)
        except NetworkLookupError as exc:
            snap = PartySnapshot(party_id=record.party_id, taken_at=now, lookup=TECHNICAL_FAILURE, problems=(str(exc),))
        if snap.lookup == TECHNICAL_FAILURE:
            gives_up = isinstance(self.retry.decide(attempts_so_far=record.attempts, now=now), GiveUp)
            if not (gives_up and self.settings.parity.snapshot == "best_effort"):
                why = "; ".join(snap.problems) or "technical failure"
                error = PsbTransientError(
                    f"the snapshot of the party's network registration failed: {why}",
                    code="SNAPSHOT",
                    party_id=record.party_id,
                )
                return self.changes.for_error(record, error, [], now)
            note = f"going on without a snapshot after {record.attempts + 1} tries"
            snap = replace(snap, extra={**snap.extra, GAVE_UP: note})
        return stay(
            record,
            by=self._by,
            kind="snapshot",
            detail=snap.as_detail(),
            next_run_at=now,
            attempts=0,
            last_error=None,
            last_error_code=None,
        )
