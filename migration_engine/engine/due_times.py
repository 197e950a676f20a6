"""When a migration runs next, and what deadline it gets, on entering a state.

One function used by the import, the worker and the operator actions, so a migration is
scheduled the same way however it got into a state.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from migration_engine.machine import TERMINAL_STATES, Direction, State
from migration_engine.settings import Settings

# Inbound states with a deadline: the takeover poll and the final verification.
_INBOUND_DEADLINED = {State.TAKEOVER_SUBMITTED, State.PERMISSIONS_SET}


def next_run_at(
    direction: Direction, state: State, *, has_key: bool, settings: Settings, now: datetime
) -> datetime | None:
    """When the worker should run the step of ``state``; None = not scheduled (waiting or final)."""
    if state in TERMINAL_STATES or state in (State.NEEDS_ATTENTION, State.KEY_REJECTED):
        return None
    if direction is Direction.TO_ECONNECT and state is State.REQUESTED:
        return now if has_key else None
    if direction is Direction.FROM_ECONNECT:
        if state is State.KEY_EXPIRED:
            return now if settings.keys.reissue_expired else None
        if state is State.KEY_ISSUED and settings.handoff.mode == "manual":
            return None
        if state is State.KEY_DELIVERED:
            # The new provider needs time to act on the key: look after one poll period.
            return now + timedelta(seconds=settings.takeover.poll_s)
    return now


def deadline_at(
    direction: Direction, state: State, *, key_issued_at: datetime | None, settings: Settings, now: datetime
) -> datetime | None:
    """The deadline a migration gets on entering ``state`` (None: no deadline there)."""
    if direction is Direction.TO_ECONNECT and state in _INBOUND_DEADLINED:
        return now + timedelta(hours=settings.takeover.deadline_h)
    if direction is Direction.FROM_ECONNECT and state is State.KEY_DELIVERED:
        return (key_issued_at or now) + timedelta(hours=settings.keys.ttl_h)
    return None
