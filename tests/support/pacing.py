"""Checks of a batch's starts against its schedule: every start inside a window, no wave over its cap."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from datetime import datetime

from migration_engine.schedule import BatchSchedule


def starts_per_hour(schedule: BatchSchedule, starts: Iterable[datetime]) -> Counter[datetime]:
    return Counter(schedule.hour_start(s) for s in starts)


def starts_per_day(schedule: BatchSchedule, starts: Iterable[datetime]) -> Counter[datetime]:
    return Counter(schedule.day_start(s) for s in starts)


def pacing_violations(schedule: BatchSchedule, starts: Iterable[datetime]) -> list[str]:
    """What in ``starts`` breaks ``schedule``: a start outside a window, an hour or a day over its cap."""
    starts = sorted(starts)
    problems = [f"started at {s.isoformat()} outside a window" for s in starts if not schedule.is_open(s)]
    if schedule.per_hour is not None:
        problems += [
            f"{n} starts in the hour from {h.isoformat()} (per_hour {schedule.per_hour})"
            for h, n in sorted(starts_per_hour(schedule, starts).items())
            if n > schedule.per_hour
        ]
    if schedule.per_day is not None:
        problems += [
            f"{n} starts on the day from {d.isoformat()} (per_day {schedule.per_day})"
            for d, n in sorted(starts_per_day(schedule, starts).items())
            if n > schedule.per_day
        ]
    return problems
