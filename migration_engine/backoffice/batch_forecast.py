"""A batch's forecast as `status` and `batch show` print it: the store's measurements
(``store/forecast_inputs.py``) run through the model (``forecast.py``).

The pace of starts is measured from the batch's recent starts (``start_rate``); without a
measurement (nothing started yet, or every wave started at one instant) the caller's
``fallback_rate_per_s`` (e.g. from the PSB budget or the worker's concurrency) is used, and
without that the starts go as fast as the windows and caps allow. The time from start to
finish is the median of the batch's recently completed migrations, per direction; with both
directions left, the slower direction's median (the batch waits for its slowest kind).
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from datetime import datetime

from migration_engine.backoffice.forecast import Forecast, duration_text, forecast
from migration_engine.errors import InputError
from migration_engine.machine import Direction
from migration_engine.schedule import BatchSchedule
from migration_engine.store import Store
from migration_engine.store.forecast_inputs import ForecastInputs, start_rate


def batch_forecast(
    store: Store, batch_name: str, *, now: datetime, fallback_rate_per_s: float | None = None
) -> Forecast:
    """Batch ``batch_name``'s forecast as of ``now``; ``InputError`` when there is no such batch."""
    schedule = store.batch_schedule(batch_name)
    calendar = schedule or BatchSchedule()
    inputs = store.forecast_inputs(
        batch_name, now=now, hour_start=calendar.hour_start(now), day_start=calendar.day_start(now)
    )
    if inputs is None:
        raise InputError(f"there is no batch named {batch_name!r}")
    return forecast_from(schedule, inputs, fallback_rate_per_s=fallback_rate_per_s)


def finish_after_start(inputs: ForecastInputs) -> tuple[float | None, int, list[str]]:
    """The time from start to finish the forecast assumes, how many completions it rests on, notes."""
    medians = {d: statistics.median(s) for d, s in inputs.durations_s.items() if s}
    notes: list[str] = []
    left = inputs.directions_left or frozenset(Direction)
    measured = [d for d in left if d in medians]
    if not measured:
        measured = list(medians)  # the other direction's measure, said so below
    if not measured:
        return None, 0, notes
    slowest = max(measured, key=lambda d: medians[d])
    for d in sorted(left - set(medians)):
        notes.append(f"no {d} migration has finished yet: assumed to take as long as {slowest}")
    if len(medians) > 1:
        notes.append("per direction: " + ", ".join(f"{d} {duration_text(medians[d])}" for d in sorted(medians)))
    return medians[slowest], len(inputs.durations_s[slowest]), notes


def forecast_from(
    schedule: BatchSchedule | None, inputs: ForecastInputs, *, fallback_rate_per_s: float | None = None
) -> Forecast:
    """The forecast for measured ``inputs`` under ``schedule``."""
    rate = start_rate(inputs.recent_starts)
    if rate is None:
        rate = fallback_rate_per_s
    finish_s, samples, notes = finish_after_start(inputs)
    found = forecast(
        schedule,
        now=inputs.now,
        not_started=inputs.not_started,
        in_flight=inputs.in_flight,
        started_this_hour=inputs.started_this_hour,
        started_today=inputs.started_today,
        start_rate_per_s=rate,
        finish_after_start_s=finish_s,
        finished_samples=samples,
        in_flight_started=inputs.in_flight_started,
        held=inputs.held,
        held_in_flight=inputs.held_in_flight,
    )
    if found.done:  # when it did finish
        return replace(found, finish_at=inputs.last_completed_at, assumptions=found.assumptions + tuple(notes))
    return replace(found, assumptions=found.assumptions + tuple(notes)) if notes else found
