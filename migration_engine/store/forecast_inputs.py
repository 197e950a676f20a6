"""What a batch's forecast is computed from (``backoffice/forecast.py``), measured in a few queries.

Per batch, in one read transaction:

- the open migrations by where they stand: *not started* (no first mutating call yet), *in
  flight* (started, not finished) and *held* (paused, or in a state that waits for a person:
  needs_attention, key_rejected, an inbound one still waiting for its key);
- the starts in the current clock hour and local day (against the schedule's wave caps), the
  earliest and latest start among those in flight;
- the recent starts' times (the pace of starts is measured from them, ``start_rate``) and, per
  direction, the time from start to completion of the most recently completed migrations.

A migration's start is ``migrations.started_at``: set when it takes its start slot, right before
its first mutating call (``pacing.py``). A held migration that has started keeps its in-flight
slot (the gate counts it) until a person acts: ``held_in_flight``.

Only bounded reads: aggregates, and the newest ``RECENT`` starts and completions.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, case, func, or_, select, true

from migration_engine.machine import STATE_INFO, Direction, Kind, State
from migration_engine.store.database import Database
from migration_engine.store.queries import open_state
from migration_engine.store.schema import batches, migrations

m = migrations.c
RECENT = 500  # starts and completions (per direction) read to measure the pace
# States that wait for a person (machine.Kind.WAITING): held, not in the forecast.
HELD_STATES = {d: tuple(i.state for i in infos if i.kind is Kind.WAITING) for d, infos in STATE_INFO.items()}


@dataclass(frozen=True)
class ForecastInputs:
    """A batch's figures for its forecast, as of ``now`` (see the module docstring)."""

    batch_id: int
    now: datetime
    not_started: int
    in_flight: int
    held: int  # open migrations that wait for a person
    held_in_flight: int  # ... of which started: they keep their in-flight slot
    finished: int  # completed or cancelled
    started_this_hour: int
    started_today: int
    in_flight_started: tuple[datetime, datetime] | None  # earliest, latest start of those in flight
    recent_starts: tuple[datetime, ...]  # the newest ``RECENT`` starts, oldest first
    durations_s: dict[Direction, tuple[float, ...]] = field(default_factory=dict)  # start -> completed
    directions_left: frozenset[Direction] = frozenset()  # directions with migrations not started or in flight
    last_completed_at: datetime | None = None


def _held() -> Any:
    waiting = or_(
        *(and_(m.direction == d.value, m.state.in_([s.value for s in ss])) for d, ss in HELD_STATES.items())
    )
    return or_(m.paused == true(), waiting)


def _counts(conn: Connection, batch_id: int) -> dict[str, Any]:
    held, started = _held(), m.started_at.is_not(None)
    live = and_(open_state(), ~held)

    def total(*when: Any) -> Any:
        return func.coalesce(func.sum(case((and_(*when), 1), else_=0)), 0)

    rows = conn.execute(
        select(
            m.direction,
            total(live, ~started),
            total(live, started),
            total(open_state(), held),
            total(open_state(), held, started),
            total(~open_state()),
            func.max(m.completed_at),
        )
        .where(m.batch_id == batch_id)
        .group_by(m.direction)
    ).all()
    out: dict[str, Any] = {"left": set(), "last": None}
    names = ("not_started", "in_flight", "held", "held_in_flight", "finished")
    for name in names:
        out[name] = 0
    for direction, *figures, last in rows:
        for name, value in zip(names, figures, strict=True):
            out[name] += int(value)
        if int(figures[0]) or int(figures[1]):
            out["left"].add(Direction(direction))
        if last is not None and (out["last"] is None or last > out["last"]):
            out["last"] = last
    return out


def _in_flight_span(conn: Connection, batch_id: int) -> tuple[datetime, datetime] | None:
    row = conn.execute(
        select(func.min(m.started_at), func.max(m.started_at)).where(
            m.batch_id == batch_id, m.started_at.is_not(None), open_state(), ~_held()
        )
    ).one()
    return None if row[0] is None else (_utc(row[0]), _utc(row[1]))


def _utc(value: Any) -> datetime:
    """An aggregate's datetime: SQLite may hand MIN/MAX back as the stored text."""
    parsed = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _started_since(conn: Connection, batch_id: int, since: datetime) -> int:
    query = select(func.count()).where(m.batch_id == batch_id, m.started_at >= since)
    return int(conn.execute(query).scalar_one())


def _recent_starts(conn: Connection, batch_id: int) -> tuple[datetime, ...]:
    query = (
        select(m.started_at)
        .where(m.batch_id == batch_id, m.started_at.is_not(None))
        .order_by(m.started_at.desc())
        .limit(RECENT)
    )
    return tuple(sorted(_utc(v) for v in conn.execute(query).scalars().all()))


def _durations(conn: Connection, batch_id: int) -> dict[Direction, tuple[float, ...]]:
    out: dict[Direction, tuple[float, ...]] = {}
    for direction in Direction:
        rows = conn.execute(
            select(m.started_at, m.completed_at)
            .where(
                m.batch_id == batch_id,
                m.direction == direction.value,
                m.state == State.COMPLETED.value,
                m.started_at.is_not(None),
                m.completed_at.is_not(None),
            )
            .order_by(m.completed_at.desc())
            .limit(RECENT)
        ).all()
        seconds = tuple(max(0.0, (_utc(done) - _utc(began)).total_seconds()) for began, done in rows)
        if seconds:
            out[direction] = seconds
    return out


def read(
    db: Database, batch_name: str, *, now: datetime, hour_start: datetime, day_start: datetime
) -> ForecastInputs | None:
    """The forecast's figures for batch ``batch_name`` (None: no such batch); the current wave
    buckets begin at ``hour_start`` and ``day_start`` (the schedule's ``hour_start``/``day_start``)."""
    with db.read("measure a batch for its forecast") as conn:
        found = conn.execute(select(batches.c.id).where(batches.c.name == batch_name)).scalar_one_or_none()
        if found is None:
            return None
        batch_id = int(found)
        counts = _counts(conn, batch_id)
        return ForecastInputs(
            batch_id=batch_id,
            now=now,
            not_started=counts["not_started"],
            in_flight=counts["in_flight"],
            held=counts["held"],
            held_in_flight=counts["held_in_flight"],
            finished=counts["finished"],
            started_this_hour=_started_since(conn, batch_id, hour_start),
            started_today=_started_since(conn, batch_id, day_start),
            in_flight_started=_in_flight_span(conn, batch_id) if counts["in_flight"] else None,
            recent_starts=_recent_starts(conn, batch_id),
            durations_s=_durations(conn, batch_id),
            directions_left=frozenset(counts["left"]),
            last_completed_at=counts["last"],
        )


def start_rate(starts: tuple[datetime, ...], *, bucket_s: float = 3600.0) -> float | None:
    """Starts per second while they go: one over the median gap between consecutive starts in
    the same clock hour (a closed window, an hour's cap or a wait between waves is not a gap of
    the pace). None when there are fewer than two in any hour, or they came all at once."""
    gaps = [
        (b - a).total_seconds()
        for a, b in itertools.pairwise(starts)
        if int(a.timestamp() // bucket_s) == int(b.timestamp() // bucket_s)
    ]
    if not gaps:
        return None
    gap = statistics.median(gaps)
    return None if gap <= 0 else 1.0 / gap

