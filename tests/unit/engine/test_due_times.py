"""When a migration runs next and what deadline it gets on entering a state: pure functions of the settings."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from migration_engine.engine.due_times import deadline_at, next_run_at
from migration_engine.machine import STATE_INFO, TERMINAL_STATES, Direction, Kind, State, states
from migration_engine.settings import Settings, load_settings

NOW = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
ISSUED = NOW - timedelta(hours=5)
IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT


def settings(**env: str) -> Settings:
    """The defaults, plus ``section__key=value`` overrides as the environment would give them."""
    return load_settings(env={"PEPPOL_MIGRATE_" + k.upper(): v for k, v in env.items()})


DEFAULTS = settings(takeover__poll_s="45", takeover__deadline_h="72", keys__ttl_h="168")


def run_at(direction: Direction, state: State, *, has_key: bool = True, s: Settings = DEFAULTS) -> datetime | None:
    return next_run_at(direction, state, has_key=has_key, settings=s, now=NOW)


# ---- next_run_at -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.REQUESTED, None),  # without a key: waits for one (`key set`)
        (State.KEY_ISSUED, NOW),
        (State.TAKEOVER_SUBMITTED, NOW),
        (State.TAKEN_OVER, NOW),
        (State.CAPABILITIES_CONFIGURED, NOW),
        (State.PERMISSIONS_SET, NOW),
        (State.KEY_REJECTED, None),
        (State.NEEDS_ATTENTION, None),
        (State.COMPLETED, None),
        (State.CANCELLED, None),
    ],
)
def test_inbound_runs_now_in_its_active_states(state, expected):
    assert run_at(IN, state, has_key=False) == expected


def test_inbound_requested_runs_as_soon_as_it_has_a_key():
    assert run_at(IN, State.REQUESTED, has_key=True) == NOW
    assert run_at(IN, State.REQUESTED, has_key=False) is None


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.REQUESTED, NOW),  # asks eConnect for a key: no key needed
        (State.KEY_ISSUED, NOW),  # outbox handoff (the default)
        (State.KEY_DELIVERED, NOW + timedelta(seconds=45)),  # the new provider gets one poll to act
        (State.TAKEN_OVER, NOW),
        (State.KEY_EXPIRED, None),  # keys.reissue_expired is off by default
        (State.NEEDS_ATTENTION, None),
        (State.COMPLETED, None),
        (State.CANCELLED, None),
    ],
)
def test_outbound_schedule_per_state(state, expected):
    assert run_at(OUT, state, has_key=False) == expected
    assert run_at(OUT, state, has_key=True) == expected  # outbound never waits for a key of ours


def test_outbound_key_delivered_waits_one_poll_whatever_the_poll():
    assert run_at(OUT, State.KEY_DELIVERED, s=settings(takeover__poll_s="300")) == NOW + timedelta(seconds=300)


def test_expired_outbound_key_is_reissued_only_when_configured():
    assert run_at(OUT, State.KEY_EXPIRED, s=settings(keys__reissue_expired="true")) == NOW
    assert run_at(OUT, State.KEY_EXPIRED, s=settings(keys__reissue_expired="false")) is None


def test_manual_handoff_leaves_an_issued_outbound_key_for_the_export():
    manual = settings(handoff__mode="manual")
    assert run_at(OUT, State.KEY_ISSUED, s=manual) is None
    assert run_at(IN, State.KEY_ISSUED, s=manual) == NOW  # inbound submits its key itself
    assert run_at(OUT, State.KEY_DELIVERED, s=manual) == NOW + timedelta(seconds=30)  # default poll


@pytest.mark.parametrize("direction", list(Direction))
def test_waiting_and_terminal_states_are_never_scheduled_with_a_key(direction):
    """A key changes only inbound requested; a state the worker has nothing to do in stays unscheduled."""
    idle = {i.state for i in STATE_INFO[direction] if i.kind is not Kind.ACTIVE} - {State.REQUESTED}
    assert idle >= TERMINAL_STATES
    for state in idle:
        assert run_at(direction, state, has_key=True) is None, state


# ---- deadline_at -------------------------------------------------------------------------


def deadline(direction: Direction, state: State, issued: datetime | None, s: Settings = DEFAULTS) -> datetime | None:
    return deadline_at(direction, state, key_issued_at=issued, settings=s, now=NOW)


@pytest.mark.parametrize("state", [State.TAKEOVER_SUBMITTED, State.PERMISSIONS_SET])
def test_inbound_takeover_and_verification_get_the_takeover_deadline(state):
    assert deadline(IN, state, None) == NOW + timedelta(hours=72)
    # Inbound deadlines count from entering the state, not from the key.
    assert deadline(IN, state, ISSUED, settings(takeover__deadline_h="2")) == NOW + timedelta(hours=2)


def test_outbound_key_delivered_deadline_counts_from_the_key_issue():
    assert deadline(OUT, State.KEY_DELIVERED, ISSUED) == ISSUED + timedelta(hours=168)
    assert deadline(OUT, State.KEY_DELIVERED, ISSUED, settings(keys__ttl_h="24")) == ISSUED + timedelta(hours=24)
    # A key of unknown age counts from now.
    assert deadline(OUT, State.KEY_DELIVERED, None) == NOW + timedelta(hours=168)


@pytest.mark.parametrize("direction", list(Direction))
def test_no_other_state_has_a_deadline(direction):
    deadlined = {
        IN: {State.TAKEOVER_SUBMITTED, State.PERMISSIONS_SET},
        OUT: {State.KEY_DELIVERED},
    }[direction]
    for state in states(direction):
        assert (deadline(direction, state, ISSUED) is not None) == (state in deadlined), state
