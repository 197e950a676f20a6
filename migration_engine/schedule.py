"""A batch's schedule: when its migrations may start, and how many at a time.

A back office moves customers in waves: in the evening or at the weekend, a few hundred a
night, never on a public holiday. A ``BatchSchedule`` says so:

- ``start_at``: nothing of the batch starts before it (UTC instant; None: at once);
- ``windows``: a weekly calendar in the schedule's ``timezone`` (IANA name, e.g.
  ``Europe/Amsterdam``), each window days + a local start and end time; empty means always
  open. A window whose end is not after its start runs past midnight into the next day
  (``Fri 22:00-02:00``); ``24:00`` ends at midnight;
- ``blackouts``: local dates on which no window opens (a window that runs past midnight into
  a blackout date stops at that midnight);
- ``per_hour`` / ``per_day``: the wave size, the most migrations *started* (first mutating
  call) in one clock hour / one local day;
- ``max_in_flight``: the most migrations of the batch started and not yet finished;
- ``priority``: between batches sharing workers, higher first.

The window gates the *first mutating call* of a migration only; what follows a started
takeover goes on outside windows unless a setting holds it (``docs/operations.md``).

Times are compared as UTC instants. Local wall-clock times go through ``zoneinfo``: a window
opening inside a daylight-saving gap (02:30 on the spring-forward night) opens at the first
instant after the gap; in the autumn's repeated hour the first occurrence counts
(``fold=0``). This module is pure: no database, no clock of its own.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from migration_engine.errors import InputError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_DAY_INDEX = {d.casefold(): i for i, d in enumerate(DAYS)}
_WINDOW = re.compile(r"^\s*(?P<days>[A-Za-z,\-\s]+?)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})\s*$")
_SEARCH_DAYS = 400  # how far ahead a next opening is looked for (a year and a bit)


@dataclass(frozen=True)
class Window:
    """One weekly window: on ``days`` (0 = Monday), from ``start`` to ``end`` local time;
    ``end`` of None means midnight (24:00); an ``end`` not after ``start`` runs into the next day."""

    days: frozenset[int]
    start: time
    end: time | None

    def text(self) -> str:
        end = "24:00" if self.end is None else format(self.end, "%H:%M")
        return f"{_days_text(self.days)} {self.start:%H:%M}-{end}"

    def spans(self, day: date, tz: ZoneInfo) -> tuple[datetime, datetime] | None:
        """The UTC instants this window is open for when it starts on local ``day``, or None."""
        if day.weekday() not in self.days:
            return None
        opens = _local(day, self.start, tz)
        if self.end is None:
            closes = _local(day + timedelta(days=1), time(0), tz)
        elif self.end > self.start:
            closes = _local(day, self.end, tz)
        else:
            closes = _local(day + timedelta(days=1), self.end, tz)
        return opens, closes


def _local(day: date, at: time, tz: ZoneInfo) -> datetime:
    """The UTC instant of local ``day`` ``at``; a time in a DST gap becomes the gap's end."""
    naive = datetime.combine(day, at)
    early = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if early.astimezone(tz).replace(tzinfo=None) == naive:
        return early  # an existing time (in the autumn's repeated hour: its first occurrence)
    # A time in the spring-forward gap: fold=1 reads it with the later offset (an instant before
    # the jump), fold=0 with the earlier one (after it). The jump itself lies between; find it.
    low, high = naive.replace(tzinfo=tz, fold=1).astimezone(UTC), early
    after = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0) if high.microsecond == 0 else high


def _days_text(days: frozenset[int]) -> str:
    ordered = sorted(days)
    if ordered and ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
        return f"{DAYS[ordered[0]]}-{DAYS[ordered[-1]]}"
    return ",".join(DAYS[d] for d in ordered)


def _parse_time(text: str, where: str, *, end: bool) -> time | None:
    hours, minutes = (int(p) for p in text.split(":"))
    if end and (hours, minutes) == (24, 0):
        return None
    if not (0 <= hours <= 23 and 0 <= minutes <= 59):
        raise InputError(f"{where}: {text!r} is not a time of day (HH:MM, 00:00-23:59; 24:00 as an end)")
    return time(hours, minutes)


def _parse_days(text: str, where: str) -> frozenset[int]:
    days: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        first, _, last = (s.strip().casefold()[:3] for s in part.partition("-"))
        if first not in _DAY_INDEX or (last and last not in _DAY_INDEX):
            raise InputError(f"{where}: {part!r} is not a day or a range of days (Mon..Sun, e.g. Mon-Fri or Sat,Sun)")
        a = _DAY_INDEX[first]
        b = _DAY_INDEX[last] if last else a
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not days:
        raise InputError(f"{where}: no days given (e.g. Mon-Fri 19:00-23:00)")
    return frozenset(days)


def parse_window(text: str, *, where: str = "window") -> Window:
    """``Mon-Fri 19:00-23:00``, ``Sat,Sun 08:00-18:00``, ``Fri 22:00-02:00``, ``Sun 00:00-24:00``."""
    found = _WINDOW.match(text)
    if not found:
        raise InputError(f"{where}: {text!r} is not a window; write days and times, e.g. 'Mon-Fri 19:00-23:00'")
    start = _parse_time(found["start"], where, end=False)
    assert start is not None
    end = _parse_time(found["end"], where, end=True)
    if end is not None and end == start:
        raise InputError(f"{where}: {text!r} opens and closes at the same time")
    return Window(days=_parse_days(found["days"], where), start=start, end=end)


def parse_timezone(name: str, *, where: str = "timezone") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InputError(f"{where}: {name!r} is not a time zone (an IANA name such as Europe/Amsterdam)") from None


@dataclass(frozen=True)
class BatchSchedule:
    """When a batch's migrations may start (see the module docstring)."""

    timezone: str = "UTC"
    windows: tuple[Window, ...] = ()
    blackouts: frozenset[date] = frozenset()
    start_at: datetime | None = None
    per_hour: int | None = None
    per_day: int | None = None
    max_in_flight: int | None = None
    priority: int = 0
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tz", parse_timezone(self.timezone))
        for name in ("per_hour", "per_day", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name.replace('_', '-')}: {value} is not a positive number")
        if self.start_at is not None and self.start_at.tzinfo is None:
            raise InputError("start: give a time zone or an offset (e.g. 2027-03-22T19:00+01:00)")

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @property
    def always_open(self) -> bool:
        return not self.windows and not self.blackouts

    def local_day(self, at: datetime) -> date:
        return at.astimezone(self._tz).date()

    def spans(self, around: datetime, days_ahead: int = 2) -> Iterator[tuple[datetime, datetime]]:
        """The open spans (UTC) of windows starting on local days from the day before ``around``
        to ``days_ahead`` days after, in order, clipped by blackouts and ``start_at``."""
        first = self.local_day(around) - timedelta(days=1)
        for offset in range(days_ahead + 2):
            yield from self._spans_of(first + timedelta(days=offset))

    def _spans_of(self, day: date) -> Iterator[tuple[datetime, datetime]]:
        if day in self.blackouts:
            return
        windows = self.windows or (Window(days=frozenset(range(7)), start=time(0), end=None),)
        found = sorted(s for w in windows if (s := w.spans(day, self._tz)) is not None)
        for opens, closes in found:
            next_day = day + timedelta(days=1)
            if next_day in self.blackouts:  # runs into a blackout date: stop at its midnight
                closes = min(closes, _local(next_day, time(0), self._tz))
            if self.start_at is not None:
                opens = max(opens, self.start_at.astimezone(UTC))
            if opens < closes:
                yield opens, closes

    def is_open(self, at: datetime) -> bool:
        """Whether a migration may start at ``at`` (windows, blackouts and the start time)."""
        at = at.astimezone(UTC)
        if self.start_at is not None and at < self.start_at:
            return False
        return any(opens <= at < closes for opens, closes in self.spans(at, days_ahead=0))

    def next_open(self, at: datetime) -> datetime | None:
        """``at`` when open, else when the next window opens; None when none opens within a year."""
        at = at.astimezone(UTC)
        if self.start_at is not None and at < self.start_at:
            at = self.start_at.astimezone(UTC)
        first = self.local_day(at) - timedelta(days=1)
        for offset in range(_SEARCH_DAYS):
            for opens, closes in self._spans_of(first + timedelta(days=offset)):
                if closes > at:
                    return max(opens, at)
        return None

    def closes_at(self, at: datetime) -> datetime | None:
        """When the window open at ``at`` closes (None if none is open then)."""
        at = at.astimezone(UTC)
        ends = [closes for opens, closes in self.spans(at, days_ahead=0) if opens <= at < closes]
        return max(ends) if ends else None

    def hour_start(self, at: datetime) -> datetime:
        """The start (UTC) of the clock hour ``at`` is in: the ``per_hour`` wave's bucket."""
        return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)

    def day_start(self, at: datetime) -> datetime:
        """The start (UTC) of the local day ``at`` is in: the ``per_day`` wave's bucket."""
        return _local(self.local_day(at), time(0), self._tz)

    # ---- stored form --------------------------------------------------------------------

    def as_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "windows": [w.text() for w in self.windows],
            "blackouts": sorted(d.isoformat() for d in self.blackouts),
            "start_at": None if self.start_at is None else self.start_at.astimezone(UTC).isoformat(),
            "per_hour": self.per_hour,
            "per_day": self.per_day,
            "max_in_flight": self.max_in_flight,
            "priority": self.priority,
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "schedule") -> BatchSchedule:
        try:
            start = data.get("start_at")
            return cls(
                timezone=str(data.get("timezone") or "UTC"),
                windows=tuple(parse_window(str(w), where=f"{where}: window") for w in data.get("windows") or ()),
                blackouts=frozenset(date.fromisoformat(str(d)) for d in data.get("blackouts") or ()),
                start_at=None if start is None else datetime.fromisoformat(str(start)),
                per_hour=_opt_int(data.get("per_hour")),
                per_day=_opt_int(data.get("per_day")),
                max_in_flight=_opt_int(data.get("max_in_flight")),
                priority=int(data.get("priority") or 0),
            )
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: {exc}") from None

    @classmethod
    def from_json(cls, text: str, *, where: str = "schedule") -> BatchSchedule:
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise InputError(f"{where}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise InputError(f"{where}: not a JSON object")
        return cls.from_dict(data, where=where)


def _opt_int(value: object) -> int | None:
    return None if value is None else int(str(value))


def parse_blackouts(values: Iterable[str], *, where: str = "blackout") -> frozenset[date]:
    out: set[date] = set()
    for text in values:
        try:
            out.add(date.fromisoformat(text.strip()))
        except ValueError:
            raise InputError(f"{where}: {text!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(out)
