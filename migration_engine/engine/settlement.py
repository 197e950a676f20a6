"""When `run --until-settled` stops, and what its exit code says about what is left.

Settled means nothing can progress without outside help: nothing in flight, leased or due,
and every migration scheduled later waits on someone else (``WAITS_ON_OTHERS``: an outbound
key at the new provider, whose takeover the engine merely polls for until ``keys.ttl_h``).
The engine's own waits (a backoff retry, an inbound takeover poll, a re-issue, due rows held
back by an open circuit) keep it running. The loop (``loop.py``) asks ``settled`` after every
claim round that started nothing; the command prints ``settlement`` and exits with its
``outcome``. docs/operations.md has the table of exit codes.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum

from migration_engine.machine import TERMINAL_STATES, Direction, State
from migration_engine.store import Store

# Scheduled, yet only someone else can move them on: an outbound key at the new provider, whose
# takeover the engine merely polls for (until keys.ttl_h). Every other scheduled migration waits
# on the engine itself (a backoff retry, an inbound takeover poll, a re-issue): worth waiting for.
WAITS_ON_OTHERS: frozenset[tuple[Direction, State]] = frozenset({(Direction.FROM_ECONNECT, State.KEY_DELIVERED)})
# Unscheduled and stuck until a person acts: `retry`/`cancel`, a new inbound key (`key set`), or
# a fresh outbound key (`retry`) after the new provider let the old one expire.
NEEDS_A_PERSON: frozenset[State] = frozenset({State.NEEDS_ATTENTION, State.KEY_REJECTED, State.KEY_EXPIRED})


class Settled(IntEnum):
    """How `run --until-settled` ended, as its exit code (1, 2 and 130 mean failed, bad input
    and interrupted; these three stay clear of them)."""

    ALL_DONE = 0  # every migration is completed or cancelled
    WAITING_ON_OTHERS = 3  # open migrations wait on others: a new provider, a key, a resume
    NEEDS_ATTENTION = 4  # at least one needs a person: needs_attention, key_rejected, key_expired


@dataclass(frozen=True)
class Settlement:
    """What is left when the worker stops: the open migrations per (direction, state), how many
    of them are paused, and when the earliest scheduled one is due."""

    open: dict[tuple[Direction, State], int]
    paused: int
    next_run_at: datetime | None

    @property
    def outcome(self) -> Settled:
        if any(state in NEEDS_A_PERSON for (_, state), n in self.open.items() if n):
            return Settled.NEEDS_ATTENTION
        return Settled.WAITING_ON_OTHERS if any(self.open.values()) else Settled.ALL_DONE

    def lines(self) -> list[str]:
        """For the terminal: the outcome, what still waits per state, the next poll."""
        head = {
            Settled.ALL_DONE: "settled: every migration is completed or cancelled",
            Settled.WAITING_ON_OTHERS: "settled: the open migrations wait on others",
            Settled.NEEDS_ATTENTION: "settled: some migrations need attention",
        }[self.outcome]
        out = [f"{head} (exit {int(self.outcome)})"]
        for (direction, state), n in sorted(self.open.items()):
            why = "needs a person" if state in NEEDS_A_PERSON else "waits on others"
            out.append(f"  {direction:<14} {state:<24} {n:>7}  {why}")
        if self.paused:
            out.append(f"  paused (of the above)                  {self.paused:>7}  waits for `resume`")
        if self.next_run_at is not None:
            out.append(f"next poll due at {self.next_run_at.isoformat(timespec='seconds')}")
        return out


def settlement(store: Store) -> Settlement:
    """The open migrations of the whole database, for the summary and exit code of `run`."""
    summary = store.work_summary()
    open_ = {(d, s): n for d, s, n in store.counts() if s not in TERMINAL_STATES and n}
    paused = store.status_figures(since=store.clock.now()).paused if open_ else 0
    return Settlement(open=open_, paused=paused, next_run_at=summary.next_run_at)


def settled(store: Store, in_flight: int) -> bool:
    """Whether nothing can progress without outside help: nothing in flight here, leased, or
    due, and every migration scheduled later waits on others (``WAITS_ON_OTHERS``).

    Due rows held back by an open circuit are the engine's own wait (it probes after its
    cool-down), so they keep it running, as do leases of other workers or of a crashed one.
    """
    if in_flight:
        return False
    summary = store.work_summary()
    if summary.leased or summary.due_now:
        return False
    if not summary.scheduled_later:
        return True
    # Cheap first: fewer such rows in all than scheduled ones means some wait on the engine.
    counts = store.counts()
    others = sum(n for d, s, n in counts if (d, s) in WAITS_ON_OTHERS)
    if others < summary.scheduled_later:
        return False
    now = store.clock.now()
    by_state: Counter[tuple[Direction, State]] = Counter()
    for r in store.list_migrations(states={s for _, s in WAITS_ON_OTHERS}):
        free = not r.paused and (r.lease_until is None or r.lease_until <= now)
        if free and r.next_run_at is not None and r.next_run_at > now and (r.direction, r.state) in WAITS_ON_OTHERS:
            by_state[(r.direction, r.state)] += 1
    return sum(by_state.values()) >= summary.scheduled_later
