"""The forecast's arithmetic: windows across days and a daylight-saving change, the wave caps, the
in-flight cap, the start time, a measured start rate, and the cases with no forecast."""

from __future__ import annotations

import time as timer
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from migration_engine.backoffice.forecast import Forecast, duration_text, forecast
from migration_engine.schedule import BatchSchedule, parse_window

AMS = ZoneInfo("Europe/Amsterdam")
HOUR = 3600.0
# Monday 2027-03-22, noon in Amsterdam (CET, UTC+1).
MONDAY_NOON = datetime(2027, 3, 22, 12, 0, tzinfo=AMS)


def ams(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=AMS).astimezone(UTC)


def evenings(
    *, per_hour: int | None = None, per_day: int | None = None, max_in_flight: int | None = None
) -> BatchSchedule:
    return BatchSchedule(
        timezone="Europe/Amsterdam",
        windows=(parse_window("Mon-Fri 19:00-23:00"),),
        per_hour=per_hour,
        per_day=per_day,
        max_in_flight=max_in_flight,
    )


def run(schedule: BatchSchedule | None, *, now: datetime = MONDAY_NOON, **kw: object) -> Forecast:
    args: dict[str, object] = {
        "in_flight": 0,
        "start_rate_per_s": None,
        "finish_after_start_s": HOUR,
        "finished_samples": 10,
    }
    args.update(kw)
    return forecast(schedule, now=now, **args)  # type: ignore[arg-type]


def test_always_open_without_caps_everything_starts_now_and_finishes_one_median_later():
    f = run(None, not_started=50)
    assert f.last_start_at == MONDAY_NOON
    assert f.finish_at == MONDAY_NOON + timedelta(hours=1)
    assert f.confidence == "measured" and f.reason is None and not f.done
    assert "finishes about 2027-03-22 12:00 UTC" in f.summary()


def test_a_measured_start_rate_spreads_the_starts():
    f = run(None, not_started=10, start_rate_per_s=1 / 60)  # one a minute
    assert f.last_start_at == MONDAY_NOON + timedelta(minutes=10)
    assert f.finish_at == MONDAY_NOON + timedelta(minutes=70)
    assert any("60 an hour" in a for a in f.assumptions)


def test_evening_windows_across_days_filled_per_hour():
    # 10 an hour, 19:00-23:00 on weekdays: 40 an evening; 100 end in Wednesday's 20:00 wave.
    f = run(evenings(per_hour=10), not_started=100)
    assert f.last_start_at == ams(2027, 3, 24, 20, 0)
    assert f.finish_at == ams(2027, 3, 24, 21, 0)


def test_per_day_cap_counts_local_days():
    f = run(evenings(per_day=30), not_started=100)
    assert f.last_start_at == ams(2027, 3, 25, 19, 0)  # 30 Mon, Tue, Wed, 10 Thu


def test_the_weekend_is_skipped_and_this_hours_starts_count():
    friday = ams(2027, 3, 26, 22, 30)
    f = run(evenings(per_hour=10), now=friday, not_started=15, started_this_hour=4)
    # 6 more at 22:30 Friday (10 an hour), the other 9 on Monday at 19:00.
    assert f.last_start_at == ams(2027, 3, 29, 19, 0)
    g = run(evenings(per_hour=10), now=friday, not_started=6, started_this_hour=4)
    assert g.last_start_at == friday


def test_todays_starts_count_against_the_daily_cap():
    at = ams(2027, 3, 22, 20, 0)
    f = run(evenings(per_day=30), now=at, not_started=10, started_today=25)
    assert f.last_start_at == ams(2027, 3, 23, 19, 0)  # 5 now, 5 tomorrow evening


def test_spring_forward_night_has_one_hour_less_to_start_in():
    # Sunday 29 March 2026, 01:00-04:00 Amsterdam: 02:00 jumps to 03:00, so two hours, not three.
    night = BatchSchedule(timezone="Europe/Amsterdam", windows=(parse_window("Sun 01:00-04:00"),), per_hour=10)
    now = ams(2026, 3, 28, 12, 0)
    f = run(night, now=now, not_started=20)
    assert f.last_start_at == ams(2026, 3, 29, 3, 0)  # 00:00 and 01:00 UTC
    g = run(night, now=now, not_started=21)
    assert g.last_start_at == ams(2026, 4, 5, 1, 0)  # the 21st waits a week


def test_fall_back_night_has_one_hour_more():
    # Sunday 25 October 2026, 01:00-04:00 Amsterdam: 03:00 comes back to 02:00: four hours.
    night = BatchSchedule(timezone="Europe/Amsterdam", windows=(parse_window("Sun 01:00-04:00"),), per_hour=10)
    f = run(night, now=ams(2026, 10, 24, 12, 0), not_started=40)
    assert f.last_start_at == datetime(2026, 10, 25, 2, 0, tzinfo=UTC)  # 23:00, 00, 01, 02 UTC
    assert f.last_start_at.astimezone(AMS).hour == 3


def test_a_daily_cap_on_the_short_day_still_counts_the_whole_local_day():
    days = BatchSchedule(timezone="Europe/Amsterdam", per_day=10)  # always open
    f = run(days, now=ams(2026, 3, 29, 12, 0), not_started=25)
    # 10 on Sunday 29th (a 23-hour day), 10 on Monday, 5 on Tuesday, each at local midnight.
    assert f.last_start_at == ams(2026, 3, 31, 0, 0)


def test_start_at_holds_everything_back():
    later = ams(2027, 4, 1, 19, 30)
    f = run(BatchSchedule(start_at=later), not_started=5)
    assert f.last_start_at == later
    assert f.finish_at == later + timedelta(hours=1)


def test_in_flight_cap_starts_a_wave_per_median_duration():
    f = run(BatchSchedule(max_in_flight=5), not_started=20)
    assert f.last_start_at == MONDAY_NOON + timedelta(hours=3)  # waves at 0, 1h, 2h, 3h
    assert f.finish_at == MONDAY_NOON + timedelta(hours=4)


def test_in_flight_migrations_hold_their_slots_until_their_median_finish():
    started = MONDAY_NOON - timedelta(minutes=30)
    f = run(BatchSchedule(max_in_flight=5), not_started=5, in_flight=5, in_flight_started=(started, started))
    assert f.last_start_at == MONDAY_NOON + timedelta(minutes=30)
    assert f.finish_at == MONDAY_NOON + timedelta(minutes=90)


def test_only_in_flight_left_finishes_with_the_latest_start():
    first, last = MONDAY_NOON - timedelta(minutes=50), MONDAY_NOON - timedelta(minutes=20)
    f = run(evenings(), not_started=0, in_flight=3, in_flight_started=(first, last))
    assert f.last_start_at is None
    assert f.finish_at == last + timedelta(hours=1)  # in flight goes on outside windows


def test_overdue_in_flight_is_expected_now():
    long_ago = MONDAY_NOON - timedelta(hours=5)
    f = run(None, not_started=0, in_flight=2, in_flight_started=(long_ago, long_ago))
    assert f.finish_at == MONDAY_NOON
    assert any("overdue" in a for a in f.assumptions)


def test_no_window_within_a_year_gives_no_forecast_and_says_why():
    mondays = {date(2027, 3, 22) + timedelta(weeks=w) for w in range(60)}
    only_mondays = BatchSchedule(windows=(parse_window("Mon 19:00-20:00"),), blackouts=frozenset(mondays))
    f = run(only_mondays, not_started=3)
    assert f.finish_at is None and f.last_start_at is None and f.confidence == "none"
    assert f.reason is not None and "no window opens within a year" in f.reason
    assert f.summary().startswith("no forecast: no window opens")


def test_nothing_finished_yet_gives_the_last_start_but_no_finish():
    f = run(evenings(per_hour=10), not_started=20, finish_after_start_s=None, finished_samples=0)
    assert f.finish_at is None and f.last_start_at == ams(2027, 3, 22, 20, 0)
    assert f.reason is not None and "not measured" in f.reason


def test_few_samples_make_a_rough_forecast():
    assert run(None, not_started=1, finished_samples=2).confidence == "rough"


def test_done_and_held():
    assert run(None, not_started=0).done
    held = run(None, not_started=0, held=3)
    assert not held.done and held.finish_at is None and "3 waiting for a person" in (held.reason or "")
    some = run(None, not_started=4, held=3)
    assert some.finish_at is not None and any("3 waiting for a person" in a for a in some.assumptions)


def test_a_pace_of_decades_is_not_a_date():
    f = run(BatchSchedule(per_day=1), not_started=5000)
    assert f.finish_at is None and "more than 5 years" in (f.reason or "")


def test_a_big_batch_is_forecast_quickly():
    began = timer.monotonic()
    f = run(evenings(per_hour=50, max_in_flight=400), not_started=100_000, start_rate_per_s=0.5)
    took = timer.monotonic() - began
    assert f.finish_at is not None and f.finish_at > MONDAY_NOON + timedelta(days=500)
    assert took < 2.0, f"{took:.2f}s"


def test_negative_counts_are_refused():
    with pytest.raises(ValueError):
        run(None, not_started=-1)


@pytest.mark.parametrize(("s", "text"), [(40, "40s"), (720, "12m"), (5 * HOUR + 600, "5h 10m"), (51 * HOUR, "2d 3h")])
def test_duration_text(s: float, text: str):
    assert duration_text(s) == text


def test_started_migrations_waiting_for_a_person_keep_their_slots():
    f = run(BatchSchedule(max_in_flight=5), not_started=9, held=2, held_in_flight=2)
    assert f.last_start_at == MONDAY_NOON + timedelta(hours=2)  # 3 at a time: 0, 1h, 2h
    g = run(BatchSchedule(max_in_flight=2), not_started=9, held=2, held_in_flight=2)
    assert g.finish_at is None and "taken by migrations that wait for a person" in (g.reason or "")
