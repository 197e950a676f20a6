"""The state tables: reachability, allowed moves, and the generated diagram."""

import pytest

from migration_engine import machine
from migration_engine.errors import TransitionError
from migration_engine.machine import Direction, Kind, State, Trigger
from tests.support import HAPPY_PATH


@pytest.mark.parametrize("direction", list(Direction))
def test_every_state_is_reachable_from_requested(direction):
    assert machine.reachable(direction, State.REQUESTED) == set(machine.states(direction))


@pytest.mark.parametrize("direction", list(Direction))
def test_every_non_terminal_state_can_reach_completed_or_a_waiting_state(direction):
    waiting_or_done = {i.state for i in machine.STATE_INFO[direction] if i.kind is not Kind.ACTIVE}
    for info in machine.STATE_INFO[direction]:
        if info.kind is Kind.TERMINAL:
            continue
        reach = machine.reachable(direction, info.state) - {info.state}
        assert State.COMPLETED in reach or State.CANCELLED in reach
        assert reach & waiting_or_done, info.state


@pytest.mark.parametrize("direction", list(Direction))
def test_the_happy_path_reaches_completed(direction):
    path = HAPPY_PATH[direction]
    state = State.REQUESTED
    for trigger in path:
        state = machine.next_state(direction, state, trigger)
    assert state is State.COMPLETED


def test_terminal_states_allow_nothing():
    for direction in Direction:
        for trigger in Trigger:
            for final in machine.TERMINAL_STATES:
                with pytest.raises(TransitionError):
                    machine.next_state(direction, final, trigger, failed_state=State.KEY_ISSUED)


def test_failure_and_retry_return_to_the_failed_state():
    d = Direction.TO_ECONNECT
    assert machine.next_state(d, State.TAKEOVER_SUBMITTED, Trigger.FAIL) is State.NEEDS_ATTENTION
    assert (
        machine.next_state(d, State.NEEDS_ATTENTION, Trigger.RETRY, failed_state=State.TAKEOVER_SUBMITTED)
        is State.TAKEOVER_SUBMITTED
    )
    with pytest.raises(TransitionError, match="only needs_attention"):
        machine.next_state(d, State.KEY_ISSUED, Trigger.RETRY, failed_state=State.KEY_ISSUED)


def test_refused_key_waits_for_a_new_one():
    d = Direction.TO_ECONNECT
    assert machine.next_state(d, State.KEY_ISSUED, Trigger.KEY_REFUSED) is State.KEY_REJECTED
    assert machine.next_state(d, State.KEY_REJECTED, Trigger.KEY_RECEIVED) is State.KEY_ISSUED


def test_outbound_expiry_and_reissue():
    d = Direction.FROM_ECONNECT
    assert machine.next_state(d, State.KEY_DELIVERED, Trigger.KEY_TIMED_OUT) is State.KEY_EXPIRED
    assert machine.next_state(d, State.KEY_EXPIRED, Trigger.REISSUE) is State.REQUESTED


def test_a_move_of_the_other_direction_is_refused_with_the_allowed_ones():
    with pytest.raises(TransitionError, match="allowed there: cancel, fail, key_handed_off"):
        machine.next_state(Direction.FROM_ECONNECT, State.KEY_ISSUED, Trigger.TAKEOVER_REQUESTED)


def test_diagram_lists_every_move_of_the_table():
    for direction in Direction:
        text = machine.mermaid(direction)
        for move in machine.table(direction):
            assert f"{move.source.value} --> {move.dest.value}: {move.trigger.value}" in text


def test_readme_diagrams_are_the_generated_ones():
    from pathlib import Path

    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    for direction in Direction:
        assert machine.mermaid(direction) in readme, "regenerate the README diagram: peppol-migrate states --mermaid"


# ---- the transitions machine answers exactly as the tables say ------------------------


def _table_dests(direction, state, trigger):
    return {m.dest for m in machine.all_moves(direction) if m.source is state and m.trigger is trigger}


@pytest.mark.parametrize("direction", list(Direction))
def test_the_built_machine_has_exactly_the_moves_of_the_table(direction):
    built = {
        (event, t.source, t.dest)
        for event, spec in machine._machine(direction).events.items()
        for found in spec.transitions.values()
        for t in found
    }
    table = {(m.trigger.value, m.source.value, m.dest.value) for m in machine.all_moves(direction)}
    assert len(table) == len(machine.all_moves(direction))  # no move listed twice
    assert built == table


@pytest.mark.parametrize("direction", list(Direction))
def test_next_state_answers_as_the_table_for_every_state_and_trigger(direction):
    """Every state (also the other direction's), every trigger: the table's one move, or TransitionError."""
    answered = 0
    for state in State:
        for trigger in Trigger:
            dests = _table_dests(direction, state, trigger)
            if trigger is Trigger.RETRY:
                continue  # retry depends on where it failed: the next test
            assert len(dests) <= 1, (state, trigger)  # the table is deterministic
            if dests:
                assert machine.next_state(direction, state, trigger) is dests.pop()
                answered += 1
            else:
                with pytest.raises(TransitionError):
                    machine.next_state(direction, state, trigger)
    assert answered == sum(1 for m in machine.all_moves(direction) if m.trigger is not Trigger.RETRY)


@pytest.mark.parametrize("direction", list(Direction))
def test_retry_goes_to_the_failed_state_only_where_the_table_allows(direction):
    for state in State:
        dests = _table_dests(direction, state, Trigger.RETRY)
        for failed_state in [None, *State]:
            if failed_state in dests:
                assert machine.next_state(direction, state, Trigger.RETRY, failed_state=failed_state) is failed_state
            else:
                with pytest.raises(TransitionError):
                    machine.next_state(direction, state, Trigger.RETRY, failed_state=failed_state)
