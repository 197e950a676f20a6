"""``peppol-migrate batch schedule NAME ...`` and ``batch show NAME``: a batch's pacing.

`batch schedule` sets when the batch's migrations may start (windows in a time zone, blackout
dates, a start time), how many a clock hour and a local day, how many in flight, and its
priority (docs/operations.md, "Campaign pacing"). The flags given replace those parts of the
batch's current schedule and leave the others; ``none`` unsets a part (``--per-hour none``,
``--window none``: always open); ``--clear`` removes the schedule. The change is audited on
every open migration of the batch. `import` takes the same flags (``add_schedule_arguments``).

`batch show` prints the schedule in words and local times, whether a window is open now and
when the next opens or closes, the starts this hour and day and the migrations in flight
against the caps, the migrations per state, and the forecast. Unknown batch, bad value: exit 2.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from migration_engine.cli.actors import actor as actor_of
from migration_engine.errors import InputError

if TYPE_CHECKING:
    from migration_engine.engine.runtime import Runtime
    from migration_engine.schedule import ScheduleEdit

NONE = "none"
_CAPS = (("per_hour", "--per-hour"), ("per_day", "--per-day"), ("max_in_flight", "--max-in-flight"))


def add_schedule_arguments(p: argparse.ArgumentParser, *, clear: bool = True) -> None:
    """The schedule flags (``batch schedule`` and ``import``)."""
    g = p.add_argument_group("schedule (docs/operations.md, Campaign pacing)")
    g.add_argument(
        "--window",
        action="append",
        metavar="'DAYS HH:MM-HH:MM'",
        help="when migrations may start, e.g. 'Mon-Fri 19:00-23:00' (repeat for more; replaces the "
        "windows; an end not after the start runs into the next day; none: always open)",
    )
    g.add_argument("--timezone", metavar="ZONE", help="the windows' time zone, e.g. Europe/Amsterdam (default UTC)")
    g.add_argument(
        "--blackout",
        action="append",
        metavar="YYYY-MM-DD",
        help="a local date no window opens on (repeat; none: no blackouts)",
    )
    g.add_argument(
        "--start",
        metavar="ISO",
        help="nothing starts before this time, e.g. 2027-03-22T19:00 (local if no offset; none)",
    )
    g.add_argument("--per-hour", metavar="N", help="at most N migrations started in a clock hour (none: no cap)")
    g.add_argument("--per-day", metavar="N", help="at most N migrations started in a local day (none: no cap)")
    g.add_argument("--max-in-flight", metavar="N", help="at most N of the batch started and not finished (none)")
    g.add_argument("--priority", metavar="N", help="between batches sharing workers, higher first (default 0)")
    if clear:
        g.add_argument("--clear", action="store_true", help="remove the batch's schedule (starts at once, unpaced)")


def add_parser(sub: Any) -> None:
    """Register ``batch schedule`` and ``batch show`` on the CLI's subparsers."""
    batch = sub.add_parser("batch", help="a batch's schedule, pace and forecast").add_subparsers(
        dest="batch_command", required=True
    )
    sched = batch.add_parser("schedule", help="set when and how fast a batch's migrations start (audited)")
    sched.add_argument("name", help="the batch")
    add_schedule_arguments(sched)
    sched.add_argument("--actor", default=None, help="who sets it (default: the OS user)")
    sched.add_argument("--json", action="store_true")
    show = batch.add_parser("show", help="a batch's schedule, window now, wave usage and forecast")
    show.add_argument("name", help="the batch")
    show.add_argument("--json", action="store_true")


def _whole(text: str, flag: str, *, allow_none: bool = True) -> int | None:
    if allow_none and text.strip().casefold() == NONE:
        return None
    try:
        return int(text.strip())
    except ValueError:
        also = f" (or {NONE})" if allow_none else ""
        raise InputError(f"{flag}: {text!r} is not a whole number{also}") from None


def schedule_edit(args: argparse.Namespace) -> ScheduleEdit:
    """The schedule flags as an edit of the batch's schedule; ``InputError`` naming the flag."""
    from datetime import datetime

    from migration_engine.schedule import PRIORITY_RANGE, ScheduleEdit, parse_blackouts, parse_timezone, parse_window

    fields: dict[str, Any] = {}
    if args.timezone is not None:
        parse_timezone(args.timezone, where="--timezone")
        fields["timezone"] = args.timezone
    if args.window:
        given = [w for w in args.window if w.strip().casefold() != NONE]
        if given and len(given) != len(args.window):
            raise InputError(f"--window: {NONE} means no windows at all; give it alone")
        fields["windows"] = tuple(parse_window(w, where="--window") for w in given)
    if args.blackout:
        given = [d for d in args.blackout if d.strip().casefold() != NONE]
        if given and len(given) != len(args.blackout):
            raise InputError(f"--blackout: {NONE} means no blackout dates; give it alone")
        fields["blackouts"] = parse_blackouts(given, where="--blackout")
    if args.start is not None:
        if args.start.strip().casefold() == NONE:
            fields["start_at"] = None
        else:
            try:
                fields["start_at"] = datetime.fromisoformat(args.start.strip())
            except ValueError:
                raise InputError(
                    f"--start: {args.start!r} is not a time (ISO 8601, e.g. 2027-03-22T19:00 or 2027-03-22T19:00+01:00)"
                ) from None
    for name, flag in _CAPS:
        value = getattr(args, name)
        if value is not None:
            number = _whole(value, flag)
            if number is not None and number < 1:
                raise InputError(f"{flag}: {number} is not a positive number")
            fields[name] = number
    if args.priority is not None:
        low, high = PRIORITY_RANGE
        priority = _whole(args.priority, "--priority", allow_none=False)
        if priority is None or not low <= priority <= high:
            raise InputError(f"--priority: {priority} is not between {low} and {high}")
        fields["priority"] = priority
    clear = bool(getattr(args, "clear", False))
    if clear and fields:
        raise InputError("--clear removes the schedule: give it without other schedule flags")
    return ScheduleEdit(clear=clear, **fields)


def run(rt: Runtime, args: argparse.Namespace) -> int:
    if args.batch_command == "schedule":
        return _schedule(rt, args)
    return _show(rt, args)


def _schedule(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import batch_pacing

    edit = schedule_edit(args)  # bad flags: exit 2 before the database is opened
    if edit.empty:
        raise InputError(
            "batch schedule: nothing to set; give --window, --timezone, --blackout, --start, --per-hour, "
            "--per-day, --max-in-flight or --priority (or --clear)"
        )
    store = rt.checked_store()
    current = store.scheduled_batch(args.name)
    if current is None:
        raise InputError(f"there is no batch named {args.name!r}")
    store.require_audit_key()  # the change is audited
    change = store.set_batch_schedule(args.name, edit.apply(current.schedule), actor_of(args.actor))
    shown = batch_pacing.pacing(change.batch, now=rt.clock.now(), counts=None, forecast=None)
    if args.json:
        data = {
            "batch": args.name,
            "changed": change.changed,
            "audited_migrations": change.audited,
            "schedule": shown["schedule"],
            "previous": None if change.previous is None else change.previous.as_dict(),
            "window": shown["window"],
        }
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    if not change.changed:
        print(f"batch {args.name}: the schedule is unchanged")
    elif change.batch.schedule is None:
        print(f"batch {args.name}: schedule removed (recorded on {change.audited} open migrations)")
    else:
        print(f"batch {args.name}: schedule set (recorded on {change.audited} open migrations)")
    for line in shown["words"]:
        print(f"  {line}")
    if shown["window"]:
        print(f"  now: {shown['window']['line']}")
    return 0


def _show(rt: Runtime, args: argparse.Namespace) -> int:
    from migration_engine.backoffice import batch_pacing

    store = rt.checked_store()
    batch = store.scheduled_batch(args.name)
    info = store.batch_info(args.name)
    if batch is None or info is None:
        raise InputError(f"there is no batch named {args.name!r}")
    data = batch_pacing.batch_pacing(store, batch, now=rt.clock.now())
    states: dict[str, int] = {}
    for _direction, state, count in store.counts(batch_name=args.name):
        states[state.value] = states.get(state.value, 0) + count
    data.update(
        created_at=info.created_at.isoformat(), source=info.source, total=sum(states.values()), by_state=states
    )
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
        return 0
    source = f", from {info.source}" if info.source else ""
    print(f"batch {args.name}: {data['total']} migrations (created {info.created_at:%Y-%m-%d %H:%M} UTC{source})")
    if states:
        print("  " + "  ".join(f"{k}={v}" for k, v in sorted(states.items())))
    set_at = f"{batch.set_at:%Y-%m-%d %H:%M} UTC" if batch.set_at else ""
    set_by = f" (changed by {data['set_by']} at {set_at})" if data["set_by"] else ""
    print(f"schedule{set_by}:")
    for line in data["words"]:
        print(f"  {line}")
    if data["window"]:
        print(f"now: {data['window']['line']}")
    if data["usage"]:
        print(f"started: {data['usage']['line']}")
    forecast = data["forecast"]
    if forecast:
        print(f"forecast: {forecast['line']}")
        for note in forecast["assumptions"]:
            print(f"  {note}")
    return 0
