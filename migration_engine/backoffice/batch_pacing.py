"""What `batch show` and `status` say about a batch's pacing, as plain data (the CLI renders it).

For a scheduled batch: the schedule in words and in the schedule's local time, whether it is
open now and when it next opens or closes, the wave usage (starts this clock hour and this
local day against the caps, migrations in flight against theirs) and the forecast
(``batch_forecast``). Times are given as ISO 8601 UTC and as local text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from migration_engine.backoffice.batch_forecast import batch_forecast
from migration_engine.backoffice.forecast import duration_text
from migration_engine.errors import PeppolMigrateError
from migration_engine.schedule import BatchSchedule
from migration_engine.store import ScheduledBatch, Store
from migration_engine.store.pacing import Buckets, StartCounts

log = logging.getLogger(__name__)


def local_text(at: datetime, schedule: BatchSchedule) -> str:
    """``Mon 2027-03-22 19:00 CET``: an instant in the schedule's time zone."""
    return at.astimezone(schedule.tz).strftime("%a %Y-%m-%d %H:%M %Z")


def _in(delta: timedelta) -> str:
    return duration_text(max(0.0, delta.total_seconds()))


def describe(schedule: BatchSchedule) -> list[str]:
    """The schedule in words, one line per part."""
    lines = []
    if schedule.windows:
        texts = []
        for w in schedule.windows:
            note = " (all day)" if w.end is None and w.start.hour == w.start.minute == 0 else ""
            if w.end is not None and w.end <= w.start:
                note = " (into the next day)"
            texts.append(w.text() + note)
        lines.append(f"windows ({schedule.timezone}): " + ", ".join(texts))
    else:
        lines.append(f"windows: none, open all the time ({schedule.timezone})")
    if schedule.blackouts:
        lines.append("blackout dates: " + ", ".join(sorted(d.isoformat() for d in schedule.blackouts)))
    if schedule.start_at is not None:
        lines.append(f"starts from {local_text(schedule.start_at, schedule)}")
    caps = [
        f"{value} starts an hour" if (value := schedule.per_hour) is not None else "",
        f"{value} starts a day" if (value := schedule.per_day) is not None else "",
        f"{value} in flight" if (value := schedule.max_in_flight) is not None else "",
    ]
    shown = [c for c in caps if c]
    lines.append("at most " + ", ".join(shown) if shown else "no wave caps")
    lines.append(f"priority {schedule.priority}")
    return lines


def window_state(schedule: BatchSchedule, now: datetime) -> dict[str, Any]:
    """Open or closed at ``now``, when it closes or next opens (UTC and local), and a line."""
    is_open = schedule.is_open(now)
    closes = schedule.closes_at(now) if is_open else None
    opens = None if is_open else schedule.next_open(now)
    if is_open:
        if closes is None or closes - now >= timedelta(days=7):
            line = "open"  # no window closes it within a week
        else:
            line = f"open, closes {local_text(closes, schedule)} (in {_in(closes - now)})"
    elif opens is None:
        line = "closed, no window opens within a year"
    else:
        line = f"closed, opens {local_text(opens, schedule)} (in {_in(opens - now)})"
    return {
        "open": is_open,
        "closes_at": None if closes is None else closes.isoformat(),
        "next_open_at": None if opens is None else opens.isoformat(),
        "line": line,
    }


def _usage(counts: StartCounts | None, schedule: BatchSchedule) -> dict[str, Any] | None:
    if counts is None:
        return None
    parts = [
        ("this hour", counts.this_hour, schedule.per_hour),
        ("today", counts.today, schedule.per_day),
        ("in flight", counts.in_flight, schedule.max_in_flight),
    ]
    return {
        "started_this_hour": counts.this_hour,
        "per_hour": schedule.per_hour,
        "started_today": counts.today,
        "per_day": schedule.per_day,
        "in_flight": counts.in_flight,
        "max_in_flight": schedule.max_in_flight,
        "line": "; ".join(f"{name} {n}" + ("" if cap is None else f" of {cap}") for name, n, cap in parts),
    }


def _forecast(store: Store, batch_name: str, now: datetime) -> dict[str, Any] | None:
    try:
        found = batch_forecast(store, batch_name, now=now)
    except PeppolMigrateError as exc:  # the forecast is an estimate: its failure must not hide the rest
        log.warning("no forecast for batch %s: %s", batch_name, exc)
        return None
    return {**found.as_dict(), "line": found.summary()}


def _counts(store: Store, batches: Sequence[ScheduledBatch], now: datetime) -> dict[int, StartCounts]:
    buckets = {
        b.batch_id: Buckets(hour_start=s.hour_start(now), day_start=s.day_start(now))
        for b in batches
        if (s := b.schedule) is not None
    }
    return store.start_counts(buckets, in_flight_of=list(buckets)) if buckets else {}


def pacing(
    batch: ScheduledBatch, *, now: datetime, counts: StartCounts | None, forecast: dict[str, Any] | None
) -> dict[str, Any]:
    """A batch's pacing as data: its schedule (None: unscheduled), window state, usage, forecast."""
    schedule = batch.schedule
    out: dict[str, Any] = {
        "batch": batch.batch_name,
        "schedule": None if schedule is None else schedule.as_dict(),
        "set_at": None if batch.set_at is None else batch.set_at.isoformat(),
        "set_by": batch.set_by,
        "forecast": forecast,
    }
    if schedule is None:
        out.update(words=["no schedule: starts at once, as fast as the worker goes"], window=None, usage=None)
    else:
        out.update(words=describe(schedule), window=window_state(schedule, now), usage=_usage(counts, schedule))
    out["line"] = status_line(out)
    return out


def batch_pacing(store: Store, batch: ScheduledBatch, *, now: datetime) -> dict[str, Any]:
    """`batch show`'s pacing part for one batch (scheduled or not)."""
    counts = _counts(store, [batch], now).get(batch.batch_id) if batch.schedule is not None else None
    return pacing(batch, now=now, counts=counts, forecast=_forecast(store, batch.batch_name, now))


def status_pacing(store: Store, *, batch_name: str | None, now: datetime) -> list[dict[str, Any]]:
    """`status`'s pacing lines: every scheduled batch (or just ``batch_name`` when scheduled),
    with its usage read in one query and its forecast."""
    batches = [b for b in store.scheduled_batches() if batch_name is None or b.batch_name == batch_name]
    counts = _counts(store, batches, now)
    return [
        pacing(b, now=now, counts=counts.get(b.batch_id), forecast=_forecast(store, b.batch_name, now)) for b in batches
    ]


def status_line(item: dict[str, Any]) -> str:
    """One line for `status`: the batch, its window state, usage against the caps, the forecast."""
    parts = [f"{item['batch']}:"]
    window = item.get("window")
    parts.append(window["line"] if window else "unscheduled")
    if item.get("usage"):
        parts.append("; " + item["usage"]["line"])
    schedule = item.get("schedule")
    if schedule and schedule.get("priority"):
        parts.append(f"; priority {schedule['priority']}")
    if item.get("forecast"):
        parts.append("; " + item["forecast"]["line"])
    return " ".join(parts[:2]) + "".join(parts[2:])
