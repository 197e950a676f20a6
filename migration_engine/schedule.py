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
DAY_NAMES_LONG = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_DAY_NAMES = {name: i for i, d in enumerate(DAYS) for name in (d.casefold(), DAY_NAMES_LONG[i])}
_WINDOW = re.compile(
    r"^\s*(?P<days>[A-Za-z,\-\s]+?)\s+(?P<start>[0-9]{1,2}:[0-9]{2})\s*-\s*(?P<end>[0-9]{1,2}:[0-9]{2})\s*$"
)
_SEARCH_DAYS = 400  # how far ahead a next opening is looked for (a year and a bit)
_CLOSE_HORIZON_DAYS = 8  # how far ahead closes_at follows windows that join up
PRIORITY_RANGE = (-1000, 1000)


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
    # Offsets change on whole seconds: search those, so the result is the change itself.
    low = int(naive.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp())
    high = int(early.timestamp())
    after = early.astimezone(tz).utcoffset()
    while high - low > 1:
        middle = (low + high) // 2
        if datetime.fromtimestamp(middle, UTC).astimezone(tz).utcoffset() == after:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


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
        first, dash, last = (s.strip().casefold() for s in part.partition("-"))
        if first not in _DAY_NAMES or (dash and last not in _DAY_NAMES):
            raise InputError(f"{where}: {part!r} is not a day or a range of days (Mon..Sun, e.g. Mon-Fri or Sat,Sun)")
        a = _DAY_NAMES[first]
        b = _DAY_NAMES[last] if dash else a
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
    except (ZoneInfoNotFoundError, ValueError, OSError):
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
        low, high = PRIORITY_RANGE
        if not low <= self.priority <= high:
            raise InputError(f"priority: {self.priority} is not between {low} and {high}")
        if self.start_at is not None:
            if self.start_at.tzinfo is None or self.start_at.utcoffset() is None:
                raise InputError("start: give a time zone or an offset (e.g. 2027-03-22T19:00+01:00)")
            try:
                object.__setattr__(self, "start_at", self.start_at.astimezone(UTC))
            except OverflowError:
                raise InputError(f"start: {self.start_at.isoformat()} is out of range") from None

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
        """When the schedule, open at ``at``, closes (None if it is not open then).

        Windows that overlap or join up (``Fri 19:00-24:00`` and ``Sat 00:00-06:00``) count as
        one. A schedule that stays open for more than a week from ``at`` (one without windows,
        say) "closes" at the end of what was looked at, about a week ahead: ask again then."""
        at = at.astimezone(UTC)
        if not self.is_open(at):
            return None
        end = at
        for opens, closes in sorted(self.spans(at, days_ahead=_CLOSE_HORIZON_DAYS)):
            if opens > end:
                if end > at:
                    break
                continue
            end = max(end, closes)
        return end

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
                windows=tuple(parse_window(str(w)) for w in _items(data.get("windows"), "windows")),
                blackouts=frozenset(date.fromisoformat(str(d)) for d in _items(data.get("blackouts"), "blackouts")),
                start_at=None if start is None else datetime.fromisoformat(str(start)),
                per_hour=_opt_int(data.get("per_hour")),
                per_day=_opt_int(data.get("per_day")),
                max_in_flight=_opt_int(data.get("max_in_flight")),
                priority=_opt_int(data.get("priority")) or 0,
            )
        except (TypeError, ValueError, OverflowError, InputError) as exc:
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
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a whole number")
    return int(value)


def _items(value: object, name: str) -> list[object]:
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name}: {value!r} is not a list")
    return list(value)


def parse_blackouts(values: Iterable[str], *, where: str = "blackout") -> frozenset[date]:
    out: set[date] = set()
    for text in values:
        try:
            out.add(date.fromisoformat(text.strip()))
        except ValueError:
            raise InputError(f"{where}: {text!r} is not a date (YYYY-MM-DD)") from None
    return frozenset(out)


_KEEP: Any = object()


@dataclass(frozen=True)
class ScheduleEdit:
    """A change to a batch's schedule as an operator gives it (`batch schedule`, `import`): the
    fields given replace the current schedule's, the others are kept. ``None`` for a cap, the
    start or the priority unsets it (``windows=()``: always open; ``blackouts=frozenset()``:
    none). ``clear``: no schedule at all. A start without an offset is read in the time zone."""

    timezone: str | None = None
    windows: tuple[Window, ...] | None = None
    blackouts: frozenset[date] | None = None
    start_at: Any = _KEEP  # datetime | None (None: no start time); naive: in the time zone
    per_hour: Any = _KEEP  # int | None
    per_day: Any = _KEEP
    max_in_flight: Any = _KEEP
    priority: int | None = None
    clear: bool = False

    @property
    def empty(self) -> bool:
        return not self.clear and self == ScheduleEdit()

    def apply(self, current: BatchSchedule | None) -> BatchSchedule | None:
        """The schedule after this edit of ``current`` (None: none); ``InputError`` for bad values."""
        if self.clear:
            return None
        base = current or BatchSchedule()
        timezone = self.timezone if self.timezone is not None else base.timezone
        tz = parse_timezone(timezone, where="timezone")
        start = base.start_at if self.start_at is _KEEP else self.start_at
        if isinstance(start, datetime) and start.tzinfo is None:
            start = _local_start(start, tz)
        return BatchSchedule(
            timezone=timezone,
            windows=base.windows if self.windows is None else self.windows,
            blackouts=base.blackouts if self.blackouts is None else self.blackouts,
            start_at=start,
            per_hour=base.per_hour if self.per_hour is _KEEP else self.per_hour,
            per_day=base.per_day if self.per_day is _KEEP else self.per_day,
            max_in_flight=base.max_in_flight if self.max_in_flight is _KEEP else self.max_in_flight,
            priority=base.priority if self.priority is None else self.priority,
        )


def _local_start(naive: datetime, tz: ZoneInfo) -> datetime:
    try:
        return _local(naive.date(), naive.time(), tz)
    except (OverflowError, ValueError):
        raise InputError(f"start: {naive.isoformat()} is out of range") from None
