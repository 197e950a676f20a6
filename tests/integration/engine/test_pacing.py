"""Campaign pacing with the real worker loop (``Worker.run``) on a ManualClock, the sandbox over
loopback and a real store: a batch's schedule gates each migration's first mutating call.

- A fortnight in Europe/Amsterdam across the spring DST change (Sun 2027-03-28), windows
  Mon-Fri 19:00-23:00 and Sat 08:00-18:00, a blackout Thursday, 3 starts an hour and 8 a day:
  every start inside a window and within both caps (checked against every migration's
  ``started_at``), the caps reached, the windows following the clock change in UTC; outbound
  migrations wait two days for their new provider and finish outside the windows; the worker is
  stopped mid-window and a new one resumes without exceeding the day's wave.
- Two batches sharing one worker slot: the higher priority's migrations start first.
- Start slots taken from many threads at once (the store's compare-and-set that counts): the cap holds.

The fortnight runs on SQLite (a few thousand steps); the rest on SQLite and PostgreSQL. Nothing
waits in real time for simulated time: the loop skips the clock when idle.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

from migration_engine.backoffice.importer import import_file
from migration_engine.clock import ManualClock
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.schedule import BatchSchedule, parse_window
from migration_engine.store import Buckets, StartCaps
from tests.support import engine_settings, kvk, seed_batch
from tests.support.pacing import pacing_violations, starts_per_day

DAY = 24 * 3600.0
POLL_S = 3600  # takeover polls once an hour
REAL_S = 50  # real seconds the fortnight may take
AMSTERDAM = "Europe/Amsterdam"
MONDAY_NOON = datetime(2027, 3, 22, 11, 0, tzinfo=UTC)  # 12:00 in Amsterdam (CET)
BLACKOUT = date(2027, 3, 25)  # a Thursday
STOP_AT = datetime(2027, 3, 23, 19, 0, tzinfo=UTC)  # Tue 20:00 CET: mid-window


def fortnight_schedule(**overrides: object) -> BatchSchedule:
    fields: dict[str, object] = {
        "timezone": AMSTERDAM,
        "windows": (parse_window("Mon-Fri 19:00-23:00"), parse_window("Sat 08:00-18:00")),
        "blackouts": frozenset({BLACKOUT}),
        "per_hour": 3,
        "per_day": 8,
    }
    return BatchSchedule(**(fields | overrides))  # type: ignore[arg-type]


def runtime(tmp_path, sandbox, db_url, clock, **env) -> Runtime:
    env = {
        "PEPPOL_MIGRATE_TAKEOVER__POLL_S": str(POLL_S),
        "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": str(POLL_S),
        **env,
    }
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    return rt


def import_batch(rt: Runtime, sandbox, tmp_path, name: str, *, outbound=(), inbound=()) -> None:
    path = tmp_path / f"{name}.csv"
    seed_batch(sandbox.model, path, outbound=outbound, inbound=inbound)
    import_file(rt, path=path, batch_name=name, dry_run=False, actor="test")


def test_a_fortnight_of_windows_and_waves_across_the_dst_change(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="migration_engine.engine.pacing")
    clock = ManualClock(MONDAY_NOON)
    config = SandboxConfig(takeover_delay_s=2 * DAY, key_ttl_s=30 * DAY, seed=2027)
    outbound = [kvk(i) for i in range(30)]
    inbound = [kvk(100 + i) for i in range(24)]
    schedule = fortnight_schedule()
    with SandboxServer(config, clock=clock) as sandbox:
        rt = runtime(tmp_path, sandbox, f"sqlite:///{tmp_path / 'pacing.db'}", clock)
        import_batch(rt, sandbox, tmp_path, "campaign", outbound=outbound, inbound=inbound)
        rt.store.set_batch_schedule("campaign", schedule, actor="test")
        began = time.monotonic()

        # The first worker runs until Tuesday evening, mid-window, and is stopped there.
        stop = threading.Event()

        def stop_mid_window(_record) -> None:
            if clock.now() >= STOP_AT:
                stop.set()

        rt.worker(worker_id="worker-1", on_applied=stop_mid_window).run(until_idle=True, stop=stop)
        stopped_at = clock.now()
        assert schedule.is_open(stopped_at) and stopped_at.date() == STOP_AT.date(), stopped_at
        before_restart = {r.id: r.started_at for r in rt.store.list_migrations() if r.started_at is not None}

        # A new worker remembers nothing: it reads where the batch stands from the database.
        rt.worker(worker_id="worker-2").run(until_idle=True)
        took = time.monotonic() - began

        records = list(rt.store.list_migrations())
        assert Counter(r.state for r in records) == {State.COMPLETED: len(records)}
        assert all(r.started_at is not None for r in records)
        starts = [r.started_at for r in records if r.started_at is not None]
        assert pacing_violations(schedule, starts) == []

        per_day = starts_per_day(schedule, starts)
        local_days = sorted(d.astimezone(schedule.tz).date() for d in per_day)
        # Mon, Tue, Wed; not the blackout Thursday; Fri, Sat; not Sunday; Mon, Tue after the change.
        assert local_days == [date(2027, 3, d) for d in (22, 23, 24, 26, 27, 29, 30)], local_days
        assert sorted(per_day.values()) == [6, 8, 8, 8, 8, 8, 8]  # the day's wave is what binds
        firsts = {s.astimezone(schedule.tz).date(): s for s in sorted(starts, reverse=True)}
        # The window opens at 19:00 local: 18:00 UTC before the clocks go forward, 17:00 after.
        assert firsts[date(2027, 3, 22)] == datetime(2027, 3, 22, 18, 0, tzinfo=UTC)
        assert firsts[date(2027, 3, 27)] == datetime(2027, 3, 27, 7, 0, tzinfo=UTC)  # Sat 08:00 CET
        assert firsts[date(2027, 3, 29)] == datetime(2027, 3, 29, 17, 0, tzinfo=UTC)  # Mon 19:00 CEST

        # The restart: the new worker went on in the same window, the day still within its wave.
        tuesday = [s for s in starts if s.astimezone(schedule.tz).date() == date(2027, 3, 23)]
        assert len(tuesday) == 8
        assert 0 < sum(s <= stopped_at for s in tuesday) < 8
        assert all(rt.store.get(mid).started_at == at for mid, at in before_restart.items())  # type: ignore[union-attr]

        # Started takeovers finish outside the windows: outbound ones waited two days for the
        # new provider, polling through nights and the Sunday.
        out = [r for r in records if r.direction is Direction.FROM_ECONNECT]
        assert sum(not schedule.is_open(r.completed_at) for r in out) >= len(out) // 2  # type: ignore[arg-type]
        assert all(r.completed_at - r.started_at >= timedelta(days=2) for r in out)  # type: ignore[operator]
        assert clock.now() < datetime(2027, 4, 5, tzinfo=UTC)
        said = [r.getMessage() for r in caplog.records if r.name == "migration_engine.engine.pacing"]
        assert any(m.startswith("window opened for batch campaign") for m in said), said[:5]
        assert any(m.startswith("window closed for batch campaign") for m in said), said[:5]
        assert took < REAL_S, f"a simulated fortnight took {took:.1f} real seconds"
        rt.close()


def test_the_higher_priority_batch_starts_first_when_capacity_is_shared(tmp_path, db_url):
    clock = ManualClock(MONDAY_NOON)
    with SandboxServer(SandboxConfig(takeover_delay_s=3600, seed=5), clock=clock) as sandbox:
        rt = runtime(tmp_path, sandbox, db_url, clock, PEPPOL_MIGRATE_WORKER__CONCURRENCY="1")
        low = [kvk(300 + i) for i in range(4)]
        high = [kvk(400 + i) for i in range(4)]
        import_batch(rt, sandbox, tmp_path, "low", outbound=low)  # imported first: due first
        import_batch(rt, sandbox, tmp_path, "high", outbound=high)
        window = (parse_window("Mon-Fri 19:00-23:00"),)
        rt.store.set_batch_schedule("low", BatchSchedule(timezone=AMSTERDAM, windows=window, priority=1), actor="t")
        rt.store.set_batch_schedule("high", BatchSchedule(timezone=AMSTERDAM, windows=window, priority=5), actor="t")

        rt.worker(worker_id="worker-p").run(until_idle=True)

        records = list(rt.store.list_migrations())
        assert {r.state for r in records} == {State.COMPLETED}
        opening = datetime(2027, 3, 22, 18, 0, tzinfo=UTC)
        assert {r.started_at for r in records} == {opening}  # held for the window, then all at once
        prepares = [c["partyId"] for c in sandbox.model.calls() if c["path"].endswith("/prepareToMigrate")]
        in_order = {name: [r.party_id for r in records if r.batch_name == name] for name in ("high", "low")}
        assert prepares == in_order["high"] + in_order["low"], prepares  # each batch in id order
        rt.close()


def test_a_start_slot_is_counted_and_taken_atomically_across_workers(tmp_path, db_url):
    clock = ManualClock(MONDAY_NOON)
    with SandboxServer(SandboxConfig(seed=9), clock=clock) as sandbox:
        rt = runtime(tmp_path, sandbox, db_url, clock)
        import_batch(rt, sandbox, tmp_path, "race", outbound=[kvk(500 + i) for i in range(10)])
        batch_id = rt.store.scheduled_batch("race").batch_id  # type: ignore[union-attr]
        claimed = [(f"w{i}", rt.store.claim_due(worker_id=f"w{i}", limit=1, lease_s=600)[0]) for i in range(10)]
        hour = clock.now().replace(minute=0, second=0, microsecond=0)
        caps = StartCaps(buckets=Buckets(hour_start=hour, day_start=hour - timedelta(hours=12)), per_hour=3)

        def take(item):
            worker_id, record = item
            return rt.store.take_start(
                migration_id=record.id,
                batch_id=batch_id,
                version=record.version,
                worker_id=worker_id,
                caps=caps,
                now=clock.now(),
            )[0]

        with ThreadPoolExecutor(max_workers=10) as pool:
            taken = list(pool.map(take, claimed))
        assert sum(taken) == 3
        started = [r for r in rt.store.list_migrations() if r.started_at is not None]
        assert len(started) == 3 and {r.started_at for r in started} == {clock.now()}
        # A lost claim takes nothing, even with room: the row is someone else's now.
        worker_id, record = next(item for item, ok in zip(claimed, taken, strict=True) if not ok)
        roomy = StartCaps(buckets=caps.buckets, per_hour=100)
        assert not rt.store.take_start(
            migration_id=record.id, batch_id=batch_id, version=record.version + 1, worker_id=worker_id,
            caps=roomy, now=clock.now(),
        )[0]
        rt.close()
