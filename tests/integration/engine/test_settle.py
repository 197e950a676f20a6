"""The stop policy of `run --until-settled` (engine/settlement.py): when nothing can progress without
outside help, and what the exit code says about what is left. Migrations are written straight
into the store in the state under test; the ManualClock decides what is due."""

from __future__ import annotations

from datetime import timedelta

from migration_engine.engine.settlement import Settled, settled, settlement
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration
from tests.support.records import add, change, party

IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT


def migration(store, i: int, direction: Direction, state: State, in_s: float | None) -> NewMigration:
    due = None if in_s is None else store.clock.now() + timedelta(seconds=in_s)
    return NewMigration(party_id=party(i), direction=direction, state=state, next_run_at=due)


def test_an_empty_database_is_settled_with_nothing_left(store) -> None:
    assert settled(store, in_flight=0)
    assert settlement(store).outcome is Settled.ALL_DONE


def test_outbound_keys_at_the_new_provider_only_wait_on_others(store) -> None:
    waiting = [migration(store, i, OUT, State.KEY_DELIVERED, in_s) for i, in_s in ((1, 60), (2, 90))]
    add(store, "b", *waiting)
    assert settled(store, in_flight=0)
    result = settlement(store)
    assert result.outcome is Settled.WAITING_ON_OTHERS and int(result.outcome) == 3
    assert result.open == {(OUT, State.KEY_DELIVERED): 2}
    assert result.next_run_at == store.clock.now() + timedelta(seconds=60)
    assert any("next poll due at" in line for line in result.lines())


def test_the_engines_own_polls_and_retries_are_waited_for(store) -> None:
    add(store, "b", migration(store, 1, OUT, State.KEY_DELIVERED, 60))
    add(store, "c", migration(store, 2, IN, State.TAKEOVER_SUBMITTED, 5))
    assert not settled(store, in_flight=0)
    store.clock.advance(10)  # the inbound poll is due now: still not settled
    assert not settled(store, in_flight=0)


def test_a_step_in_flight_or_due_keeps_it_running(store) -> None:
    add(store, "b", migration(store, 1, OUT, State.REQUESTED, 0))
    assert not settled(store, in_flight=0)
    change(store, 1, new_state=State.KEY_ISSUED, next_run_at=None)
    assert settled(store, in_flight=0) and not settled(store, in_flight=1)


def test_a_paused_outbound_key_does_not_hide_a_poll_of_the_engine(store) -> None:
    """Paused rows count toward the cheap pre-check (all key_delivered rows), not the real one."""
    add(
        store,
        "b",
        migration(store, 1, OUT, State.KEY_DELIVERED, 60),
        migration(store, 2, IN, State.TAKEOVER_SUBMITTED, 30),
    )
    change(store, 1, paused=True)
    assert not settled(store, in_flight=0)


def test_a_person_is_needed_outweighs_waiting_on_others(store) -> None:
    add(
        store,
        "b",
        migration(store, 1, OUT, State.KEY_DELIVERED, 60),
        migration(store, 2, IN, State.KEY_REJECTED, None),
        migration(store, 3, IN, State.REQUESTED, None),
    )
    assert settled(store, in_flight=0)
    result = settlement(store)
    assert result.outcome is Settled.NEEDS_ATTENTION and int(result.outcome) == 4
    lines = result.lines()
    assert any("key_rejected" in line and "needs a person" in line for line in lines)
    assert any("requested" in line and "waits on others" in line for line in lines)


def test_paused_migrations_wait_for_a_resume(store) -> None:
    add(store, "b", migration(store, 1, IN, State.TAKEOVER_SUBMITTED, 5))
    change(store, 1, paused=True)
    assert settled(store, in_flight=0)
    result = settlement(store)
    assert result.outcome is Settled.WAITING_ON_OTHERS and result.paused == 1
    assert any("resume" in line for line in result.lines())
