"""What the store hands in and out: frozen records, never ORM rows.

Every datetime in and out is timezone-aware UTC. The store refuses a naive datetime.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, Final

from migration_engine.machine import Direction, State, Trigger

EVENT_KINDS: Final = frozenset(
    {"created", "transition", "api_call", "operator", "error", "observation", "audit_rekeyed", "snapshot", "finding"}
)


class _Unchanged(Enum):
    """The type of ``UNCHANGED``: a field of a ``Change`` that the compare-and-set leaves alone."""

    UNCHANGED = "UNCHANGED"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = _Unchanged.UNCHANGED


@dataclass(frozen=True)
class MigrationRecord:
    """One migration as stored: a (party, direction) state machine and its schedule."""

    id: int
    batch_id: int | None
    batch_name: str | None
    party_id: str
    direction: Direction
    state: State
    version: int  # bumped by every claim and every change: the compare-and-set token
    profile: str | None
    name: str | None
    new_provider: str | None
    key_ciphertext: str | None  # encrypted; opaque to the store
    key_issued_at: datetime | None
    next_run_at: datetime | None  # None: not scheduled (a waiting or terminal state)
    attempts: int
    lease_owner: str | None
    lease_until: datetime | None
    paused: bool
    last_error: str | None
    last_error_code: str | None
    failed_state: State | None  # the state it failed in, where `retry` resumes
    deadline_at: datetime | None
    created_at: datetime
    updated_at: datetime
    completed_at: datetime | None
    pending: PendingRequest | None = None  # an operator's action waiting for the step in flight
    current_provider: str | None = None  # to-econnect: the provider the batch file says serves it now
    started_at: datetime | None = None  # when it took its start slot (first mutating call); None: not started


@dataclass(frozen=True)
class PendingRequest:
    """An operator's action asked for while a step was in flight; applied after the step's outcome.

    ``detail`` is what the action needs (a key set's key as ciphertext only, and masked for
    the audit); it is never shown as is.
    """

    action: str  # cancel | pause | resume | retry | key set
    actor: str
    at: datetime
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EventIn:
    """An audit event to append; the store adds id, seq, time and the hash chain.

    The caller guarantees ``detail`` holds no secret (keys masked). ``detail`` must be JSON
    serialisable.
    """

    kind: str  # one of EVENT_KINDS
    actor: str  # worker id or operator
    from_state: State | None = None
    to_state: State | None = None
    trigger: Trigger | None = None
    http_method: str | None = None
    http_path: str | None = None
    http_status: int | None = None
    duration_ms: float | None = None
    request_id: str | None = None  # the PSB's requestId
    detail: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class AuditEvent:
    """A stored audit event, one link of its migration's hash chain."""

    id: int
    migration_id: int
    seq: int  # 1, 2, 3, ... per migration
    at: datetime
    kind: str
    actor: str
    from_state: State | None
    to_state: State | None
    trigger: Trigger | None
    http_method: str | None
    http_path: str | None
    http_status: int | None
    duration_ms: float | None
    request_id: str | None
    detail: Mapping[str, Any]
    prev_hash: str  # "" for seq 1
    hash: str  # hex HMAC-SHA256 under the audit key over the content fields and prev_hash


@dataclass(frozen=True)
class NewMigration:
    """One migration to import."""

    party_id: str  # canonical form
    direction: Direction
    state: State
    profile: str | None = None
    name: str | None = None
    new_provider: str | None = None
    key_ciphertext: str | None = None
    key_issued_at: datetime | None = None
    next_run_at: datetime | None = None
    current_provider: str | None = None  # to-econnect: who the file says serves the party now


@dataclass(frozen=True)
class Change:
    """One compare-and-set on ``(id, state, version)`` with the audit events it writes.

    Every field left ``UNCHANGED`` keeps its stored value. Applying a change always bumps
    the version, clears the lease and sets ``updated_at``; moving into a terminal state sets
    ``completed_at`` (and clears ``next_run_at`` unless the change sets it).
    """

    migration_id: int
    expected_state: State
    expected_version: int
    lease_owner: str | None = None  # when set, the row must still be leased by this worker
    new_state: State | None = None  # None: same state (a reschedule)
    next_run_at: datetime | _Unchanged | None = UNCHANGED
    attempts: int | _Unchanged = UNCHANGED
    last_error: str | _Unchanged | None = UNCHANGED
    last_error_code: str | _Unchanged | None = UNCHANGED
    failed_state: State | _Unchanged | None = UNCHANGED
    key_ciphertext: str | _Unchanged | None = UNCHANGED
    key_issued_at: datetime | _Unchanged | None = UNCHANGED
    deadline_at: datetime | _Unchanged | None = UNCHANGED
    paused: bool | _Unchanged = UNCHANGED
    events: Sequence[EventIn] = ()
    # Appended anyway, without a state change, when the compare-and-set fails: a step's remote
    # side effects (its api_call events) are recorded whatever becomes of its result.
    if_stale: Sequence[EventIn] = ()
    clear_pending: bool = False  # this change settles the row's pending operator request
    started_at: datetime | _Unchanged | None = UNCHANGED  # the first mutating call's step (pacing)


@dataclass(frozen=True)
class WorkSummary:
    """What the workers have left, for `run --until-idle` and progress displays.

    Counts exclude terminal migrations; ``due_now`` and ``scheduled_later`` exclude paused
    and leased ones.
    """

    due_now: int  # claimable right now
    leased: int  # in flight: leased by some worker, lease not expired
    scheduled_later: int  # next_run_at in the future
    next_run_at: datetime | None  # the earliest next_run_at of an unleased, unpaused migration

    @property
    def idle(self) -> bool:
        """Nothing due, nothing in flight, nothing scheduled."""
        return self.due_now == 0 and self.leased == 0 and self.scheduled_later == 0


@dataclass(frozen=True)
class BrokenLink:
    """Why one migration's audit trail does not verify: the first place its chain breaks, or
    where its row disagrees with its chain, or with an anchor."""

    migration_id: int
    party_id: str  # the row's (or, for a migration whose row is gone, its chain's or anchor's)
    seq: int  # the first seq that does not verify (or is missing), or the event the row contradicts
    reason: str


@dataclass(frozen=True)
class ChainHead:
    """One migration's chain head, as an anchor records it."""

    migration_id: int
    party_id: str
    seq: int  # the migration's event count (its row's event_seq)
    head: str  # the hash of event ``seq``


@dataclass(frozen=True)
class AuditAnchor:
    """Every migration's chain head at one moment, with an HMAC over them all (``root``)."""

    written_at: datetime
    key_id: str  # which audit key wrote it (an HMAC of a fixed text: reveals nothing of the key)
    heads: Sequence[ChainHead]
    root: str


@dataclass(frozen=True)
class WorkerStatus:
    """A worker process as it last reported itself: its heartbeat and its circuit breaker.

    A worker rewrites its row when its circuit changes and on every heartbeat; one whose
    ``alive_until`` has passed without a ``stopped_at`` stopped without saying so (killed).
    """

    worker_id: str
    started_at: datetime
    heartbeat_at: datetime
    alive_until: datetime  # the next heartbeat is due well before this
    stopped_at: datetime | None  # set when the worker closed cleanly
    circuit: str  # closed | open | half-open
    circuit_reason: str | None  # why it opened (no secrets: error messages are scrubbed)
    steps_run: int

    def alive(self, now: datetime) -> bool:
        return self.stopped_at is None and self.alive_until > now
