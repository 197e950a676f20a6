"""The two migration state machines, as data.

States and triggers are enums; the allowed moves are one table per direction
(``INBOUND_TABLE``, ``OUTBOUND_TABLE``). From those tables we build one ``transitions``
machine per direction, draw the README diagram and list the CLI help. Nothing outside this
module imports ``transitions``: the rest of the code asks ``next_state`` and gets an enum.

The machine here is a pure lookup. It never holds a migration and runs no callbacks: the
store's compare-and-set is the single source of truth for a migration's state.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from transitions import Machine

from migration_engine.errors import TransitionError


class Direction(StrEnum):
    """Which way a party moves."""

    TO_ECONNECT = "to-econnect"  # inbound: another provider hands the party to eConnect
    FROM_ECONNECT = "from-econnect"  # outbound: eConnect hands the party to another provider


class State(StrEnum):
    """Every state a migration can be in; the same names in the database, audit, CLI and reports."""

    REQUESTED = "requested"  # imported; inbound waits for a key, outbound asks eConnect for one
    KEY_ISSUED = "key_issued"  # a key exists (inbound: to submit; outbound: to hand off)
    TAKEOVER_SUBMITTED = "takeover_submitted"  # inbound: key sent to the PSB, waiting to see eConnect serve it
    KEY_DELIVERED = "key_delivered"  # outbound: the new provider has the key; waiting for their takeover
    TAKEN_OVER = "taken_over"  # the SMP registration moved
    CAPABILITIES_CONFIGURED = "capabilities_configured"  # inbound: profile capabilities and hooks applied
    PERMISSIONS_SET = "permissions_set"  # inbound: users granted, business card enrolled
    COMPLETED = "completed"  # terminal: done and verified
    KEY_REJECTED = "key_rejected"  # inbound: the PSB refused the key; waits for a new one
    KEY_EXPIRED = "key_expired"  # outbound: the key outlived keys.ttl_h before a takeover
    NEEDS_ATTENTION = "needs_attention"  # failed for good; an operator's retry resumes where it failed
    CANCELLED = "cancelled"  # terminal: stopped by an operator


class Trigger(StrEnum):
    """Every event that moves a migration."""

    KEY_RECEIVED = "key_received"  # inbound: a key arrived (import column or `key set`)
    KEY_PREPARED = "key_prepared"  # outbound: prepareToMigrate returned a key
    TAKEOVER_REQUESTED = "takeover_requested"  # inbound: the PSB accepted the migration PUT
    KEY_REFUSED = "key_refused"  # inbound: the PSB refused the key as invalid or expired
    KEY_HANDED_OFF = "key_handed_off"  # outbound: the key reached the new provider
    TAKEOVER_CONFIRMED = "takeover_confirmed"  # the registration is seen at its new home
    KEY_TIMED_OUT = "key_timed_out"  # outbound: no takeover within keys.ttl_h
    CAPABILITIES_APPLIED = "capabilities_applied"  # inbound: capabilities and hooks are in place
    PERMISSIONS_GRANTED = "permissions_granted"  # inbound: user permissions (and business card) are in place
    VERIFIED = "verified"  # the final check passed
    REISSUE = "reissue"  # outbound: ask eConnect for a fresh key
    FAIL = "fail"  # a step gave up: needs an operator
    RETRY = "retry"  # operator: resume a failed migration in the state it failed in
    CANCEL = "cancel"  # operator: stop the migration


class Kind(StrEnum):
    """What the worker does with a migration in a state."""

    ACTIVE = "active"  # the worker runs this state's step when it is due
    WAITING = "waiting"  # nothing runs until an operator or a key arrives
    TERMINAL = "terminal"  # never changes again


@dataclass(frozen=True)
class Move:
    """One allowed move: ``trigger`` takes a migration from ``source`` to ``dest``."""

    trigger: Trigger
    source: State
    dest: State
    why: str


@dataclass(frozen=True)
class StateInfo:
    state: State
    kind: Kind
    does: str


S, T = State, Trigger

INBOUND_TABLE: tuple[Move, ...] = (
    Move(T.KEY_RECEIVED, S.REQUESTED, S.KEY_ISSUED, "the current provider's key arrived"),
    Move(T.TAKEOVER_REQUESTED, S.KEY_ISSUED, S.TAKEOVER_SUBMITTED, "PUT config/party with the key accepted"),
    Move(T.KEY_REFUSED, S.KEY_ISSUED, S.KEY_REJECTED, "the PSB refused the key"),
    Move(T.TAKEOVER_CONFIRMED, S.TAKEOVER_SUBMITTED, S.TAKEN_OVER, "the PSB serves the party"),
    Move(T.CAPABILITIES_APPLIED, S.TAKEN_OVER, S.CAPABILITIES_CONFIGURED, "profile capabilities and hooks set"),
    Move(T.PERMISSIONS_GRANTED, S.CAPABILITIES_CONFIGURED, S.PERMISSIONS_SET, "users granted, card enrolled"),
    Move(T.VERIFIED, S.PERMISSIONS_SET, S.COMPLETED, "reachable through eConnect"),
    Move(T.KEY_RECEIVED, S.KEY_REJECTED, S.KEY_ISSUED, "a new key arrived"),
)

OUTBOUND_TABLE: tuple[Move, ...] = (
    Move(T.KEY_PREPARED, S.REQUESTED, S.KEY_ISSUED, "prepareToMigrate returned a key"),
    Move(T.KEY_HANDED_OFF, S.KEY_ISSUED, S.KEY_DELIVERED, "the key reached the new provider"),
    Move(T.TAKEOVER_CONFIRMED, S.KEY_DELIVERED, S.TAKEN_OVER, "the PSB no longer serves the party"),
    Move(T.KEY_TIMED_OUT, S.KEY_DELIVERED, S.KEY_EXPIRED, "no takeover within keys.ttl_h"),
    Move(T.VERIFIED, S.TAKEN_OVER, S.COMPLETED, "removed from eConnect's SMP, leftovers cleaned"),
    Move(T.REISSUE, S.KEY_EXPIRED, S.REQUESTED, "ask eConnect for a fresh key"),
)

STATE_INFO: dict[Direction, tuple[StateInfo, ...]] = {
    Direction.TO_ECONNECT: (
        StateInfo(S.REQUESTED, Kind.WAITING, "waits for the current provider's key"),
        StateInfo(S.KEY_ISSUED, Kind.ACTIVE, "PUT config/party {migration:{key}}"),
        StateInfo(S.TAKEOVER_SUBMITTED, Kind.ACTIVE, "polls until the PSB serves the party"),
        StateInfo(S.TAKEN_OVER, Kind.ACTIVE, "applies the profile's capabilities and hooks"),
        StateInfo(S.CAPABILITIES_CONFIGURED, Kind.ACTIVE, "grants user permissions, enrolls the business card"),
        StateInfo(S.PERMISSIONS_SET, Kind.ACTIVE, "verifies the party is reachable through eConnect"),
        StateInfo(S.COMPLETED, Kind.TERMINAL, "done"),
        StateInfo(S.KEY_REJECTED, Kind.WAITING, "waits for a new key (`key set`)"),
        StateInfo(S.NEEDS_ATTENTION, Kind.WAITING, "waits for an operator (`retry` or `cancel`)"),
        StateInfo(S.CANCELLED, Kind.TERMINAL, "stopped by an operator"),
    ),
    Direction.FROM_ECONNECT: (
        StateInfo(S.REQUESTED, Kind.ACTIVE, "GET peppol/{id}/prepareToMigrate, stores the key encrypted"),
        StateInfo(S.KEY_ISSUED, Kind.ACTIVE, "hands the key to the new provider"),
        StateInfo(S.KEY_DELIVERED, Kind.ACTIVE, "polls until the new provider has taken over"),
        StateInfo(S.TAKEN_OVER, Kind.ACTIVE, "verifies removal from eConnect, cleans leftovers"),
        StateInfo(S.COMPLETED, Kind.TERMINAL, "done"),
        StateInfo(S.KEY_EXPIRED, Kind.ACTIVE, "re-issues when keys.reissue_expired, else waits"),
        StateInfo(S.NEEDS_ATTENTION, Kind.WAITING, "waits for an operator (`retry` or `cancel`)"),
        StateInfo(S.CANCELLED, Kind.TERMINAL, "stopped by an operator"),
    ),
}

TERMINAL_STATES: frozenset[State] = frozenset({S.COMPLETED, S.CANCELLED})


def table(direction: Direction) -> tuple[Move, ...]:
    """The direction's own moves (without the fail/retry/cancel moves every state shares)."""
    return INBOUND_TABLE if direction is Direction.TO_ECONNECT else OUTBOUND_TABLE


def states(direction: Direction) -> tuple[State, ...]:
    return tuple(info.state for info in STATE_INFO[direction])


def all_moves(direction: Direction) -> tuple[Move, ...]:
    """The full table: the direction's moves plus fail, retry and cancel."""
    moves = list(table(direction))
    for info in STATE_INFO[direction]:
        if info.kind is Kind.TERMINAL or info.state is S.NEEDS_ATTENTION:
            continue
        moves.append(Move(T.FAIL, info.state, S.NEEDS_ATTENTION, "a step gave up"))
        moves.append(Move(T.RETRY, S.NEEDS_ATTENTION, info.state, "operator resumes where it failed"))
    for info in STATE_INFO[direction]:
        if info.kind is not Kind.TERMINAL:
            moves.append(Move(T.CANCEL, info.state, S.CANCELLED, "operator stops it"))
    return tuple(moves)


@cache
def _machine(direction: Direction) -> Machine:
    """One ``transitions`` machine per direction, built once from the table and reused."""
    machine = Machine(
        model=None,
        states=[s.value for s in states(direction)],
        initial=S.REQUESTED.value,
        auto_transitions=False,
        send_event=False,
    )
    for move in all_moves(direction):
        machine.add_transition(move.trigger.value, move.source.value, move.dest.value)
    return machine


def next_state(direction: Direction, state: State, trigger: Trigger, *, failed_state: State | None = None) -> State:
    """Where ``trigger`` takes a migration in ``state``; ``TransitionError`` if it may not.

    ``retry`` goes back to ``failed_state`` (the state the migration failed in).
    """
    machine = _machine(direction)
    candidates = [
        t.dest for t in machine.get_transitions(trigger=trigger.value, source=state.value) if t.dest is not None
    ]
    if trigger is T.RETRY:
        if failed_state is not None and failed_state.value in candidates:
            return failed_state
        raise TransitionError(
            f"cannot retry a {direction} migration in {state}"
            + ("" if state is S.NEEDS_ATTENTION else ": only needs_attention migrations can be retried")
        )
    if not candidates:
        allowed = sorted({m.trigger.value for m in all_moves(direction) if m.source is state})
        hint = f"; allowed there: {', '.join(allowed)}" if allowed else "; it is final"
        raise TransitionError(f"{trigger} is not allowed for a {direction} migration in {state}{hint}")
    return State(candidates[0])


def reachable(direction: Direction, start: State) -> set[State]:
    """Every state reachable from ``start`` through the full table."""
    seen = {start}
    frontier = [start]
    moves = all_moves(direction)
    while frontier:
        here = frontier.pop()
        for move in moves:
            if move.source is here and move.dest not in seen:
                seen.add(move.dest)
                frontier.append(move.dest)
    return seen


def mermaid(direction: Direction) -> str:
    """A Mermaid state diagram of the direction's own moves (fail/retry/cancel noted once)."""
    lines = ["stateDiagram-v2", f"    %% {direction}: generated from migration_engine/machine.py"]
    lines.append(f"    [*] --> {S.REQUESTED.value}")
    for move in table(direction):
        lines.append(f"    {move.source.value} --> {move.dest.value}: {move.trigger.value}")
    lines.append(f"    {S.COMPLETED.value} --> [*]")
    lines.append(f"    note right of {S.NEEDS_ATTENTION.value}: any active state --fail--> here; retry goes back")
    return "\n".join(lines)


def help_lines(direction: Direction) -> Iterable[str]:
    """One line per state for CLI help: name, kind, what the worker does."""
    for info in STATE_INFO[direction]:
        yield f"{info.state.value:<24} {info.kind.value:<8} {info.does}"
