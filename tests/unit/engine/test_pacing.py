"""The gate's decisions (engine/pacing.py), pure: when a migration of a scheduled batch may start."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta

from migration_engine.engine.pacing import (
    calendar_edges,
    followup_hold,
    hold_change,
    next_day,
    start_hold,
    starts_here,
)
from migration_engine.machine import Direction, State
from migration_engine.schedule import BatchSchedule, parse_window
from migration_engine.store import StartCounts
from tests.support.records import migration_record as a_record

RECHECK_S = 300.0
SCHEDULE = BatchSchedule(
    timezone="Europe/Amsterdam",
    windows=(parse_window("Mon-Fri 19:00-23:00"), parse_window("Sat 08:00-18:00")),
    blackouts=frozenset({date(2027, 3, 25)}),
    per_hour=3,
    per_day=8,
    max_in_flight=5,
)
NONE = StartCounts()


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2027, 3, day, hour, minute, tzinfo=UTC)


def test_a_closed_window_holds_until_it_opens():
    hold = start_hold(SCHEDULE, NONE, utc(22, 11), recheck_s=RECHECK_S)  # Mon 12:00 CET
    assert hold is not None and hold.until == utc(22, 18) and "closed" in hold.reason


def test_an_open_window_with_room_lets_it_start():
    room = StartCounts(this_hour=2, today=7, in_flight=4)
    assert start_hold(SCHEDULE, room, utc(22, 19), recheck_s=RECHECK_S) is None


def test_a_full_hour_waits_for_the_next_hour_or_the_next_opening():
    full = StartCounts(this_hour=3, today=3)
    hold = start_hold(SCHEDULE, full, utc(22, 18, 40), recheck_s=RECHECK_S)  # 19:40 CET
    assert hold is not None and hold.until == utc(22, 19) and "per_hour" in hold.reason
    hold = start_hold(SCHEDULE, full, utc(22, 21, 30), recheck_s=RECHECK_S)  # 22:30 CET: 23:00 is closed
    assert hold is not None and hold.until == utc(23, 18)


def test_a_full_day_waits_for_the_next_days_opening_across_a_blackout_and_the_dst_change():
    full = StartCounts(this_hour=1, today=8)
    hold = start_hold(SCHEDULE, full, utc(24, 19), recheck_s=RECHECK_S)  # Wed; Thu is a blackout
    assert hold is not None and hold.until == utc(26, 18) and "per_day" in hold.reason
    hold = start_hold(SCHEDULE, full, utc(27, 10), recheck_s=RECHECK_S)  # Sat; Sun closed; Mon in CEST
    assert hold is not None and hold.until == utc(29, 17)


def test_a_full_in_flight_cap_looks_again_later_inside_a_window():
    hold = start_hold(SCHEDULE, StartCounts(in_flight=5), utc(22, 19), recheck_s=RECHECK_S)
    assert hold is not None and hold.until == utc(22, 19, 5) and "in flight" in hold.reason
    hold = start_hold(SCHEDULE, StartCounts(in_flight=5), utc(22, 21, 58), recheck_s=RECHECK_S)
    assert hold is not None and hold.until == utc(23, 18)  # five minutes on the window has closed


def test_uncapped_and_always_open_never_holds():
    many = StartCounts(this_hour=10**6, today=10**6, in_flight=10**6)
    assert start_hold(BatchSchedule(), many, utc(28, 1), recheck_s=1) is None


def test_the_next_local_day_is_23_hours_away_on_the_spring_forward_day():
    assert next_day(SCHEDULE, utc(28, 10)) - SCHEDULE.day_start(utc(28, 10)) == timedelta(hours=23)
    assert next_day(SCHEDULE, utc(27, 10)) - SCHEDULE.day_start(utc(27, 10)) == timedelta(hours=24)


def test_followups_go_on_outside_windows_unless_held():
    assert followup_hold(SCHEDULE, utc(28, 3), hold_followups=False) is None
    hold = followup_hold(SCHEDULE, utc(28, 3), hold_followups=True)  # Sunday night
    assert hold is not None and hold.until == utc(29, 17)
    assert followup_hold(SCHEDULE, utc(29, 17, 30), hold_followups=True) is None


def test_only_the_first_mutating_step_of_an_unstarted_migration_is_a_start():
    inbound = a_record(direction=Direction.TO_ECONNECT, state=State.KEY_ISSUED)
    outbound = a_record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED)
    assert starts_here(inbound) and starts_here(outbound)
    assert not starts_here(replace(outbound, started_at=utc(22, 18)))  # a re-issue after expiry
    assert not starts_here(a_record(direction=Direction.TO_ECONNECT, state=State.REQUESTED))
    assert not starts_here(a_record(direction=Direction.FROM_ECONNECT, state=State.KEY_DELIVERED))


def test_a_hold_moves_only_the_due_time_under_the_workers_lease():
    record = a_record(direction=Direction.FROM_ECONNECT, state=State.REQUESTED)
    hold = start_hold(SCHEDULE, NONE, utc(22, 11), recheck_s=RECHECK_S)
    assert hold is not None
    change = hold_change(record, hold, worker_id="w1")
    assert (change.next_run_at, change.lease_owner, change.events, change.new_state) == (utc(22, 18), "w1", (), None)
    assert (change.expected_state, change.expected_version) == (record.state, record.version)


def test_calendar_edges_are_the_openings_closings_and_wave_resets():
    assert calendar_edges(SCHEDULE, utc(22, 11)) == [utc(22, 18), utc(22, 23)]  # opens; the next day
    # Open: it closes at 23:00 CET, the next hour's wave, the next day's.
    assert calendar_edges(SCHEDULE, utc(22, 19, 30)) == [utc(22, 20), utc(22, 22), utc(22, 23)]
    assert calendar_edges(BatchSchedule(), utc(22, 11)) == []  # always open, no caps: nothing changes
    assert calendar_edges(BatchSchedule(per_day=5), utc(22, 11)) == [utc(23, 0)]  # the day's wave: midnight UTC
