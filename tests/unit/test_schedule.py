"""The batch schedule model: windows, time zones with daylight saving, blackouts, start time,
the wave buckets and the stored form; and that no input makes it fail but with an InputError."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_engine.errors import InputError
from migration_engine.schedule import BatchSchedule, Window, parse_blackouts, parse_timezone, parse_window

AMS = "Europe/Amsterdam"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC)


def sched(*windows: str, tz: str = AMS, **kw: Any) -> BatchSchedule:
    return BatchSchedule(timezone=tz, windows=tuple(parse_window(w) for w in windows), **kw)


# ---- parsing --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "days", "start", "end"),
    [
        ("Mon-Fri 19:00-23:00", {0, 1, 2, 3, 4}, time(19), time(23)),
        ("Sat,Sun 08:00-18:00", {5, 6}, time(8), time(18)),
        ("fri 22:00-02:00", {4}, time(22), time(2)),
        ("Sun 00:00-24:00", {6}, time(0), None),
        ("Fri-Mon 7:30 - 9:15", {4, 5, 6, 0}, time(7, 30), time(9, 15)),
        ("Monday, Wednesday 01:00-02:00", {0, 2}, time(1), time(2)),
    ],
)
def test_parse_window(text: str, days: set[int], start: time, end: time | None) -> None:
    window = parse_window(text)
    assert window == Window(days=frozenset(days), start=start, end=end)
    assert parse_window(window.text()) == window  # the text form reads back the same


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("19:00-23:00", "is not a window"),
        ("Mon-Fri 19:00", "is not a window"),
        ("Mon-Fri 25:00-23:00", "not a time of day"),
        ("Mon-Fri 19:60-23:00", "not a time of day"),
        ("Mon-Fri 24:00-02:00", "not a time of day"),
        ("Mon-Fri 19:00-19:00", "opens and closes at the same time"),
        ("Mo-Fr 19:00-23:00", "not a day or a range of days"),
        ("Mon Tue 19:00-23:00", "not a day or a range of days"),
        ("Monkey 19:00-23:00", "not a day or a range of days"),
        ("Mon- 19:00-23:00", "not a day or a range of days"),
        (", 19:00-23:00", "no days given"),
    ],
)
def test_parse_window_refuses_bad_text_naming_where(text: str, says: str) -> None:
    with pytest.raises(InputError, match=f"^--window: .*{says}"):
        parse_window(text, where="--window")


def test_parse_timezone_and_blackouts_refuse_bad_values() -> None:
    assert parse_timezone(AMS).key == AMS
    for bad in ("Mars/Olympus", "", "/etc/passwd", "Europe/", "zone.tab"):
        with pytest.raises(InputError, match=r"^--timezone: .*is not a time zone"):
            parse_timezone(bad, where="--timezone")
    assert parse_blackouts([" 2027-12-25", "2027-12-26"]) == {date(2027, 12, 25), date(2027, 12, 26)}
    with pytest.raises(InputError, match=r"^--blackout: '2027-13-01' is not a date \(YYYY-MM-DD\)"):
        parse_blackouts(["2027-12-25", "2027-13-01"], where="--blackout")


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"per_hour": 0}, "per-hour: 0 is not a positive number"),
        ({"per_day": -3}, "per-day: -3 is not a positive number"),
        ({"max_in_flight": 0}, "max-in-flight: 0"),
        ({"priority": 1001}, "priority: 1001 is not between -1000 and 1000"),
        ({"start_at": datetime(2027, 3, 22, 19)}, "start: give a time zone"),
        ({"timezone": "Nowhere/Land"}, "timezone: 'Nowhere/Land' is not a time zone"),
    ],
)
def test_bad_schedule_values_are_input_errors(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(InputError, match=says):
        BatchSchedule(**kw)


# ---- windows --------------------------------------------------------------------------------


def test_an_evening_window_in_local_time_across_a_week() -> None:
    s = sched("Mon-Fri 19:00-23:00", "Sat 08:00-18:00")
    # Monday 22 March 2027, CET (UTC+1): 19:00 local is 18:00 UTC.
    assert not s.is_open(utc(2027, 3, 22, 17, 59, 59))
    assert s.is_open(utc(2027, 3, 22, 18))
    assert s.is_open(utc(2027, 3, 22, 21, 59, 59))
    assert not s.is_open(utc(2027, 3, 22, 22))
    assert s.closes_at(utc(2027, 3, 22, 20)) == utc(2027, 3, 22, 22)
    assert s.closes_at(utc(2027, 3, 22, 23)) is None
    assert s.next_open(utc(2027, 3, 22, 12)) == utc(2027, 3, 22, 18)
    assert s.next_open(utc(2027, 3, 22, 20)) == utc(2027, 3, 22, 20)  # open: now
    # Friday night after the window: Saturday 08:00 CET.
    assert s.next_open(utc(2027, 3, 26, 22, 30)) == utc(2027, 3, 27, 7)
    # Saturday after 18:00: nothing on Sunday; Monday 29 March is summer time (UTC+2).
    assert s.next_open(utc(2027, 3, 27, 17, 0, 1)) == utc(2027, 3, 29, 17)


def test_a_window_past_midnight_belongs_to_the_day_it_opens() -> None:
    s = sched("Fri 22:00-02:00")
    # Friday 26 March 22:00 CET = 21:00 UTC, until Saturday 02:00 CET = 01:00 UTC.
    assert s.is_open(utc(2027, 3, 26, 21))
    assert s.is_open(utc(2027, 3, 27, 0, 59))
    assert not s.is_open(utc(2027, 3, 27, 1))
    assert s.closes_at(utc(2027, 3, 27, 0)) == utc(2027, 3, 27, 1)
    # Thursday night is not open (the window is Friday's)
    assert not s.is_open(utc(2027, 3, 25, 23))
    assert s.next_open(utc(2027, 3, 27, 1)) == utc(2027, 4, 2, 20)  # a week on, summer time


def test_windows_that_join_up_close_together() -> None:
    s = sched("Fri 19:00-24:00", "Sat 00:00-06:00")
    assert s.closes_at(utc(2027, 3, 26, 20)) == utc(2027, 3, 27, 5)
    overlapping = sched("Mon 19:00-23:00", "Mon 22:00-01:00")
    assert overlapping.closes_at(utc(2027, 3, 22, 18, 30)) == utc(2027, 3, 23, 0)


def test_without_windows_it_is_always_open_and_closes_only_beyond_the_horizon() -> None:
    s = BatchSchedule(timezone=AMS, per_hour=10)
    assert s.always_open
    at = utc(2027, 3, 22, 3, 17)
    assert s.is_open(at) and s.next_open(at) == at
    closes = s.closes_at(at)
    assert closes is not None and closes - at >= timedelta(days=7)


# ---- daylight saving (Europe/Amsterdam: 28 March and 31 October 2027) --------------------


def test_spring_forward_a_window_in_the_gap_opens_when_the_gap_ends() -> None:
    # 28 March 2027 02:00 CET does not exist: clocks jump to 03:00 CEST at 01:00 UTC.
    s = sched("Sun 02:30-04:00")
    assert s.next_open(utc(2027, 3, 27, 12)) == utc(2027, 3, 28, 1)  # 03:00 CEST, exactly
    assert not s.is_open(utc(2027, 3, 28, 0, 59, 59))
    assert s.closes_at(utc(2027, 3, 28, 1)) == utc(2027, 3, 28, 2)  # 04:00 CEST
    wholly_in_gap = sched("Sun 02:00-02:45")
    assert wholly_in_gap.next_open(utc(2027, 3, 27, 12)) == utc(2027, 4, 4, 0)  # next Sunday 02:00 CEST


def test_spring_forward_an_evening_window_moves_one_hour_earlier_in_utc() -> None:
    s = sched("Sat,Sun 19:00-23:00")
    assert s.next_open(utc(2027, 3, 27, 12)) == utc(2027, 3, 27, 18)  # CET
    assert s.next_open(utc(2027, 3, 28, 12)) == utc(2027, 3, 28, 17)  # CEST
    assert s.closes_at(utc(2027, 3, 28, 17)) == utc(2027, 3, 28, 21)


def test_autumn_back_the_repeated_hour_counts_once_from_its_first_occurrence() -> None:
    # 31 October 2027: 03:00 CEST (01:00 UTC) goes back to 02:00 CET; 02:00-03:00 happens twice.
    s = sched("Sun 02:30-03:30")
    assert s.next_open(utc(2027, 10, 30, 12)) == utc(2027, 10, 31, 0, 30)  # the first 02:30 (CEST)
    assert s.closes_at(utc(2027, 10, 31, 0, 30)) == utc(2027, 10, 31, 2, 30)  # 03:30 CET
    assert s.is_open(utc(2027, 10, 31, 1, 30))  # the second 02:30 is inside it


def test_the_local_day_is_the_per_day_bucket_and_has_23_or_25_hours() -> None:
    s = BatchSchedule(timezone=AMS)
    spring, autumn = utc(2027, 3, 28, 12), utc(2027, 10, 31, 12)
    assert s.day_start(spring) == utc(2027, 3, 27, 23)
    assert s.day_start(spring + timedelta(days=1)) - s.day_start(spring) == timedelta(hours=23)
    assert s.day_start(autumn) == utc(2027, 10, 30, 22)
    assert s.day_start(autumn + timedelta(days=1)) - s.day_start(autumn) == timedelta(hours=25)
    assert s.local_day(utc(2027, 3, 22, 23, 30)) == date(2027, 3, 23)
    assert s.hour_start(utc(2027, 3, 22, 18, 59, 59, 999)) == utc(2027, 3, 22, 18)


# ---- blackouts and the start time -----------------------------------------------------------


def test_blackout_dates_open_no_window_and_cut_one_running_into_them() -> None:
    s = sched("Mon-Sun 22:00-02:00", blackouts=frozenset({date(2027, 12, 25)}))
    # 24 December's window runs into the 25th: it stops at midnight (23:00 UTC in winter).
    assert s.is_open(utc(2027, 12, 24, 22, 59))
    assert not s.is_open(utc(2027, 12, 24, 23))
    assert s.closes_at(utc(2027, 12, 24, 22)) == utc(2027, 12, 24, 23)
    # The 25th's own window does not open; the 26th's does.
    assert not s.is_open(utc(2027, 12, 25, 22))
    assert s.next_open(utc(2027, 12, 24, 23)) == utc(2027, 12, 26, 21)


def test_a_blacked_out_always_open_schedule_is_closed_that_local_day() -> None:
    s = BatchSchedule(timezone=AMS, blackouts=frozenset({date(2027, 12, 25)}))
    assert not s.always_open
    assert s.is_open(utc(2027, 12, 24, 22, 59))
    assert not s.is_open(utc(2027, 12, 24, 23))  # local midnight
    assert s.next_open(utc(2027, 12, 25, 10)) == utc(2027, 12, 25, 23)


def test_nothing_opens_before_the_start_time() -> None:
    start = datetime(2027, 3, 24, 20, 30, tzinfo=parse_timezone(AMS))  # Wednesday, mid-window
    s = sched("Mon-Fri 19:00-23:00", start_at=start)
    assert s.start_at == utc(2027, 3, 24, 19, 30)  # kept as UTC
    assert not s.is_open(utc(2027, 3, 22, 19))  # Monday's window: before the start
    assert not s.is_open(utc(2027, 3, 24, 19, 29))
    assert s.is_open(utc(2027, 3, 24, 19, 30))
    assert s.next_open(utc(2027, 3, 20)) == utc(2027, 3, 24, 19, 30)
    # no windows: open from the start on
    plain = BatchSchedule(start_at=utc(2027, 4, 1, 6))
    assert plain.next_open(utc(2027, 3, 1)) == utc(2027, 4, 1, 6)
    assert plain.is_open(utc(2027, 4, 1, 6)) and not plain.is_open(utc(2027, 4, 1, 5, 59))


def test_next_open_is_none_when_nothing_opens_within_a_year() -> None:
    s = sched("Sat 08:00-18:00", blackouts=frozenset(date(2027, 1, 2) + timedelta(weeks=w) for w in range(60)))
    assert s.next_open(utc(2027, 1, 1)) is None


def test_next_open_across_a_week_of_short_windows() -> None:
    s = sched("Wed 10:00-10:30", tz="UTC")
    at = utc(2027, 3, 24, 10, 30)  # just closed
    assert s.next_open(at) == utc(2027, 3, 31, 10)
    assert s.closes_at(utc(2027, 3, 31, 10, 29)) == utc(2027, 3, 31, 10, 30)


# ---- the stored form ------------------------------------------------------------------------

FULL = sched(
    "Mon-Fri 19:00-23:00",
    "Fri 22:00-02:00",
    "Sun 00:00-24:00",
    blackouts=frozenset({date(2027, 12, 25), date(2027, 12, 26)}),
    start_at=datetime(2027, 3, 22, 19, tzinfo=parse_timezone(AMS)),
    per_hour=50,
    per_day=300,
    max_in_flight=80,
    priority=-2,
)


def test_the_json_form_reads_back_equal() -> None:
    assert BatchSchedule.from_json(FULL.to_json()) == FULL
    assert BatchSchedule.from_dict(FULL.as_dict()) == FULL
    assert FULL.as_dict()["windows"] == ["Mon-Fri 19:00-23:00", "Fri 22:00-02:00", "Sun 00:00-24:00"]
    assert FULL.as_dict()["start_at"] == "2027-03-22T18:00:00+00:00"
    assert BatchSchedule.from_json("{}") == BatchSchedule()


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[]", "not a JSON object"),
        ("{", "not JSON"),
        ('{"windows": "Mon 19:00-23:00"}', "windows: .* is not a list"),
        ('{"windows": ["Mon"]}', "is not a window"),
        ('{"per_hour": 1.5}', "1.5 is not a whole number"),
        ('{"per_day": true}', "True is not a whole number"),
        ('{"priority": "high"}', "invalid literal"),
        ('{"start_at": "2027-03-22T19:00"}', "start: give a time zone"),
        ('{"start_at": "0001-01-01T00:00+01:00"}', "out of range"),
        ('{"blackouts": ["25-12-2027"]}', "Invalid isoformat"),
        ('{"timezone": "Mars/Olympus"}', "Mars/Olympus"),
    ],
)
def test_a_bad_stored_form_is_an_input_error_naming_where(text: str, says: str) -> None:
    with pytest.raises(InputError, match=f"^stored: .*{says}"):
        BatchSchedule.from_json(text, where="stored")


# ---- properties: any input gives a value or an InputError -------------------------------------

WINDOWISH = st.one_of(
    st.text(max_size=40),
    st.from_regex(r"\A[A-Za-z ,\-]{1,20} [0-9]{1,2}:[0-9]{2}-[0-9]{1,2}:[0-9]{2}\Z"),
    st.builds(
        lambda d, a, b: f"{d} {a}-{b}",
        st.sampled_from(["Mon", "Mon-Fri", "Sat,Sun", "Fri-Mon", "sunday", "Tue-", "x"]),
        st.from_regex(r"\A[0-9]{1,2}:[0-9]{2}\Z"),
        st.from_regex(r"\A[0-9]{1,2}:[0-9]{2}\Z"),
    ),
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.from_regex(r"\A[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}([+-][0-9]{2}:[0-9]{2}|Z)?)?\Z"),
    st.sampled_from(["UTC", AMS, "America/Santiago", "Europe", "", "../x", "Asia/Kolkata"]),
)
VALUES = st.one_of(
    SCALARS, st.lists(st.one_of(SCALARS, WINDOWISH), max_size=4), st.dictionaries(st.text(max_size=5), SCALARS)
)
KEYS = st.sampled_from(
    ["timezone", "windows", "blackouts", "start_at", "per_hour", "per_day", "max_in_flight", "priority", "other"]
)


@settings(max_examples=300, deadline=None)
@given(WINDOWISH)
def test_parse_window_gives_a_window_or_an_input_error(text: str) -> None:
    try:
        window = parse_window(text)
    except InputError as exc:
        assert str(exc).startswith("window: ")
    else:
        assert parse_window(window.text()) == window


@settings(max_examples=400, deadline=None)
@given(
    st.dictionaries(KEYS, VALUES, max_size=6),
    st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2090, 1, 1)),
)
def test_from_dict_gives_a_schedule_or_an_input_error(data: dict[str, Any], at: datetime) -> None:
    try:
        schedule = BatchSchedule.from_dict(data, where="prop")
    except InputError as exc:
        assert str(exc).startswith("prop: ")
        return
    assert BatchSchedule.from_json(schedule.to_json()) == schedule
    moment = at.replace(tzinfo=UTC)
    opens = schedule.next_open(moment)
    if schedule.is_open(moment):
        assert opens == moment
        closes = schedule.closes_at(moment)
        assert closes is not None and closes > moment
    elif opens is not None:
        assert opens > moment and schedule.is_open(opens)
