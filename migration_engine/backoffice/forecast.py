"""When a batch will finish: its schedule's windows and caps, filled at the measured pace.

Pure arithmetic on what the store measured (``store/forecast_inputs.py``; ``batch_forecast`` in
``backoffice/batch_forecast.py`` combines the two). The model (``docs/operations.md``, "Forecast"):

1. The migrations that still have to *start* (their first mutating call) start at the measured
   start rate, only while the schedule is open (``next_open``/``closes_at``: windows, blackouts,
   the start time), at most ``per_hour`` in a clock hour and ``per_day`` in a local day (the
   counts already started in the current hour and day taken off), and never more than
   ``max_in_flight`` started and not yet finished. No measured rate: they start as fast as the
   caps allow (the sandbox and a fast PSB start a wave in seconds).
2. A started migration finishes ``finish_after_start_s`` after its start: the measured median
   from start to completion. It holds an in-flight slot meanwhile; the migrations in flight now
   hold theirs until their own start plus that time (their starts spread evenly between the
   earliest and the latest, as the store reports them).
3. The batch finishes when its last migration does: the later of the last start plus that time
   and the last in-flight migration's finish.

The starts are a fluid (fractions of a migration allowed), stepped from one change of pace to
the next: a window opening or closing, a clock hour, a local day, a slot freed. No forecast
(``finish_at`` None, with the reason) when nothing can start: no window opens within a year,
or the pace needs more than ``HORIZON`` to get through. Migrations that wait for a person
(paused, needs_attention, a key to arrive) are ``held``: not in the forecast, and said so.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from migration_engine.schedule import BatchSchedule

HORIZON = timedelta(days=5 * 366)  # beyond this the pace is the news, not a date
CONFIDENT_SAMPLES = 5  # finished migrations behind a median before it is called measured
_EPS = 1e-9
_HOUR = 3600.0
_IN_FLIGHT_GROUPS = 12  # the migrations in flight, as this many evenly spread starts
_MAX_STEPS = 500_000  # a guard: every step advances time or exhausts a cap


@dataclass(frozen=True)
class Forecast:
    """When the batch's migrations will have started and finished, and what that rests on.

    ``finish_at`` None: no forecast, ``reason`` says why. ``done``: nothing is left to run
    (``batch_forecast`` then sets ``finish_at`` to when the last one finished).
    ``confidence``: ``measured`` (the time to finish comes from at least ``CONFIDENT_SAMPLES``
    finished migrations), ``rough`` (from fewer) or ``none`` (no finish_at).
    """

    finish_at: datetime | None
    last_start_at: datetime | None  # None: nothing left to start (or it never can)
    confidence: str
    assumptions: tuple[str, ...]
    reason: str | None = None
    done: bool = False

    def summary(self) -> str:
        """One line for `status` and `batch show` (UTC)."""
        if self.done:
            return "done" if self.finish_at is None else f"done: finished {_at(self.finish_at)}"
        if self.finish_at is None:
            start = f"; last start {_at(self.last_start_at)}" if self.last_start_at else ""
            return f"no forecast: {self.reason}{start}"
        start = f", last start {_at(self.last_start_at)}" if self.last_start_at else ""
        return f"finishes about {_at(self.finish_at)}{start} ({self.confidence})"

    def as_dict(self) -> dict[str, object]:
        """For `--json`: times in ISO 8601 UTC."""
        return {
            "finish_at": None if self.finish_at is None else self.finish_at.isoformat(),
            "last_start_at": None if self.last_start_at is None else self.last_start_at.isoformat(),
            "confidence": self.confidence,
            "assumptions": list(self.assumptions),
            "reason": self.reason,
            "done": self.done,
        }


def _at(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def duration_text(seconds: float) -> str:
    """``2d 3h``, ``5h 10m``, ``12m``, ``40s``."""
    s = round(seconds)
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    return f"{minutes}m" if minutes else f"{secs}s"


def _ts(at: datetime) -> float:
    return at.astimezone(UTC).timestamp()


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class _Calendar:
    """The schedule as seconds since the epoch, with the current window and day cached."""

    def __init__(self, schedule: BatchSchedule) -> None:
        self.s = schedule
        self._open_until = -math.inf  # the current window's end, when ``t`` is known to be inside it
        self._day: tuple[float, float] = (math.inf, -math.inf)

    def next_open(self, t: float) -> float | None:
        """``t`` itself when open, else the next opening; None when none within a year."""
        if t < self._open_until:
            return t
        opens = self.s.next_open(_dt(t))
        if opens is None:
            return None
        closes = self.s.closes_at(opens)
        self._open_until = _ts(closes) if closes is not None else _ts(opens)
        return _ts(opens)

    def closes(self, t: float) -> float:
        """The end of the window open at ``t`` (``next_open`` was asked first)."""
        return self._open_until

    def day(self, t: float) -> tuple[float, float]:
        """The local day ``t`` is in: its first instant and the next day's."""
        first, after = self._day
        if not first <= t < after:
            start = self.s.day_start(_dt(t))
            after_start = self.s.day_start(start + timedelta(hours=26))
            self._day = (_ts(start), _ts(after_start))
        return self._day


def forecast(
    schedule: BatchSchedule | None,
    *,
    now: datetime,
    not_started: int,
    in_flight: int,
    started_this_hour: int = 0,
    started_today: int = 0,
    start_rate_per_s: float | None,
    finish_after_start_s: float | None,
    finished_samples: int = 0,
    in_flight_started: tuple[datetime, datetime] | None = None,
    held: int = 0,
    held_in_flight: int = 0,
) -> Forecast:
    """When the batch will finish (the module docstring has the model).

    ``not_started``: migrations still to make their first mutating call (and able to: ``held``
    ones aside); ``in_flight``: started and not yet finished; ``started_this_hour`` /
    ``started_today``: starts already in the clock hour / local day of ``now`` (they count
    against ``per_hour`` / ``per_day``); ``start_rate_per_s``: the measured pace of starts while
    the schedule lets them (None: unmeasured, as fast as the caps allow);
    ``finish_after_start_s``: the median time from start to completion (None: nothing has
    finished yet); ``finished_samples``: how many finished migrations that median comes from;
    ``in_flight_started``: the earliest and latest start among those in flight (None: assume now);
    ``held``: open migrations waiting for a person, not counted; ``held_in_flight``: those of them
    that started: they keep an in-flight slot until a person acts.
    """
    if not_started < 0 or in_flight < 0:
        raise ValueError("not_started and in_flight count migrations: they are not negative")
    schedule = schedule or BatchSchedule()
    notes: list[str] = []
    if held:
        notes.append(f"{held} waiting for a person (paused, needs attention, a key) not counted")
    if not_started == 0 and in_flight == 0:
        reason = "nothing left to start or finish" if not held else f"only the {held} waiting for a person are left"
        return Forecast(None, None, "none", tuple(notes), reason=reason, done=not held)

    d = finish_after_start_s
    if d is None:
        notes.append("no migration of the batch has finished yet: the time from start to finish is unknown")
    else:
        d = max(0.0, d)
        notes.append(f"start to finish: {duration_text(d)} (median of {finished_samples} finished)")
    rate = start_rate_per_s if start_rate_per_s is not None and start_rate_per_s > 0 else None
    if rate is None:
        notes.append("starts as fast as the windows and caps allow (no start rate measured)")
    else:
        notes.append(f"starts at {rate * _HOUR:.4g} an hour while open (measured)")
    caps = [
        f"{name.replace('_', ' ')} {value}"
        for name, value in (
            ("per_hour", schedule.per_hour),
            ("per_day", schedule.per_day),
            ("max_in_flight", schedule.max_in_flight),
        )
        if value is not None
    ]
    if caps:
        notes.append("caps: " + ", ".join(caps))
    if not schedule.always_open or schedule.start_at is not None:
        notes.append(f"windows in {schedule.timezone}")
    # Without a measured time to finish, slots never free in the model: the in-flight cap
    # cannot be modelled then, and is left out of the starts.
    max_in_flight = schedule.max_in_flight if d is not None else None
    if schedule.max_in_flight is not None and d is None:
        notes.append("the in-flight cap is left out (no time to finish measured)")
    if max_in_flight is not None and held_in_flight:
        notes.append(f"{held_in_flight} started and waiting for a person keep their in-flight slots")
        if held_in_flight >= max_in_flight and not_started:
            reason = f"the in-flight cap ({max_in_flight}) is taken by migrations that wait for a person"
            return Forecast(None, None, "none", tuple(notes), reason=reason)

    t0 = _ts(now)
    running: list[tuple[float, float]] = []  # (finish, count) heap of the started, unfinished
    last_in_flight_finish: float | None = None
    if in_flight:
        first, last = in_flight_started or (now, now)
        a, b = min(_ts(first), t0), min(_ts(last), t0)
        groups = _IN_FLIGHT_GROUPS if b > a else 1
        for i in range(groups):
            at = a + (b - a) * (i + 0.5) / groups if groups > 1 else b
            heapq.heappush(running, (at + (d or 0.0), in_flight / groups))
        if d is not None:
            last_in_flight_finish = b + d

    last_start: float | None = None
    if not_started:
        outcome = _fill(
            _Calendar(schedule),
            schedule,
            t0=t0,
            left=float(not_started),
            in_hour=float(started_this_hour),
            in_day=float(started_today),
            rate=rate,
            d=d or 0.0,
            max_in_flight=max_in_flight,
            running=running,
            kept=float(held_in_flight),
        )
        if isinstance(outcome, str):
            return Forecast(None, None, "none", tuple(notes), reason=outcome)
        last_start = outcome

    last_finish = None if last_start is None else last_start + (d or 0.0)
    ends = [e for e in (last_finish, last_in_flight_finish) if e is not None]
    last_start_at = None if last_start is None else _dt(last_start)
    if d is None:
        reason = "no migration of the batch has finished yet, so the time from start to finish is not measured"
        return Forecast(None, last_start_at, "none", tuple(notes), reason=reason)
    finish = max(ends) if ends else t0
    if finish < t0:
        notes.append("the migrations in flight have taken longer than the median: overdue")
        finish = t0
    confidence = "measured" if finished_samples >= CONFIDENT_SAMPLES else "rough"
    return Forecast(_dt(finish), last_start_at, confidence, tuple(notes))


def _fill(
    cal: _Calendar,
    s: BatchSchedule,
    *,
    t0: float,
    left: float,
    in_hour: float,
    in_day: float,
    rate: float | None,
    d: float,
    max_in_flight: int | None,
    running: list[tuple[float, float]],
    kept: float = 0.0,
) -> float | str:
    """Start ``left`` migrations from ``t0``: the time of the last start, or why they cannot."""
    per_hour = math.inf if s.per_hour is None else float(s.per_hour)
    per_day = math.inf if s.per_day is None else float(s.per_day)
    cap = math.inf if max_in_flight is None else float(max_in_flight)
    occupied = kept + sum(count for _, count in running)
    hour = math.floor(t0 / _HOUR) * _HOUR
    day_first, day_after = cal.day(t0)
    horizon = t0 + HORIZON.total_seconds()
    t, last = t0, t0
    for _ in range(_MAX_STEPS):
        if left <= _EPS:
            return last
        opens = cal.next_open(t)
        if opens is None:
            return f"no window opens within a year of {_at(_dt(t))}"
        t = opens
        if t > horizon:
            return f"at this pace the batch needs more than {HORIZON.days // 366} years"
        if t >= hour + _HOUR:
            hour, in_hour = math.floor(t / _HOUR) * _HOUR, 0.0
        if not day_first <= t < day_after:
            day_first, day_after = cal.day(t)
            in_day = 0.0
        while running and running[0][0] <= t:
            occupied -= heapq.heappop(running)[1]
        if per_hour - in_hour <= _EPS:
            t = hour + _HOUR
            continue
        if per_day - in_day <= _EPS:
            t = day_after
            continue
        if cap - occupied <= _EPS:
            t = running[0][0] if running else t + _HOUR  # a slot frees when the first finishes
            continue
        want = min(left, per_hour - in_hour, per_day - in_day, cap - occupied)
        boundary = min(cal.closes(t), hour + _HOUR, day_after)
        if running and cap < math.inf:
            boundary = min(boundary, running[0][0])
        if rate is None:
            n, span = want, 0.0
        else:
            n = min(want, rate * (boundary - t))
            span = n / rate
        if n <= _EPS:
            t = max(boundary, t + 1e-3)
            continue
        heapq.heappush(running, (t + span / 2 + d, n))
        occupied += n
        left -= n
        in_hour += n
        in_day += n
        last = t + span
        t = last
    return "the schedule's caps are too fine-grained to forecast"
