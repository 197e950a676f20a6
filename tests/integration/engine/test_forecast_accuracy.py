"""The forecast against the simulated actual: a paced campaign run by the real worker loop
(``Worker.run``) on a ManualClock against the sandbox over loopback, forecast when half the batch
has completed, then run to the end.

The campaign: 24 outbound and 16 inbound parties in one batch, Europe/Amsterdam weekday evenings
19:00-23:00, at most 4 starts an hour, 10 a day and 8 in flight, from Thursday 26 March 2026: it
runs over the weekend of the spring-forward change (no window then) into the next week. The new
provider takes over three hours after it got the key, the DNS shows a change an hour late, and 5 %
of the PSB's answers are transient errors, 2 % dropped connections (fixed seed). Outbound parties
take about four hours from start to finish, inbound ones about one: the forecast uses the slower.

The figure, |forecast - actual| / (actual - first start), is printed (`-s` shows it) and must be
within 10 %. Also: the forecast's inputs as the store measures them, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from migration_engine.backoffice.batch_forecast import batch_forecast
from migration_engine.backoffice.forecast import Forecast, duration_text
from migration_engine.backoffice.importer import import_file
from migration_engine.clock import ManualClock
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.schedule import BatchSchedule, parse_window
from migration_engine.store import MigrationRecord, NewMigration, Store
from tests.support import engine_settings, kvk, seed_batch
from tests.support.records import add, change, party

CAMPAIGN_FROM = datetime(2026, 3, 26, 12, 0, tzinfo=UTC)  # Thursday, before the spring-forward Sunday
POLL_S = 15 * 60
HOUR = 3600.0
SCHEDULE = BatchSchedule(
    timezone="Europe/Amsterdam",
    windows=(parse_window("Mon-Fri 19:00-23:00"),),
    per_hour=4,
    per_day=10,
    max_in_flight=8,
)
TOLERANCE = 0.10


def campaign(tmp_path, sandbox: SandboxServer, clock: ManualClock) -> Runtime:
    outbound = [kvk(i) for i in range(24)]
    inbound = [kvk(100 + i) for i in range(16)]
    seed_batch(sandbox.model, tmp_path / "b.csv", outbound=outbound, inbound=inbound)
    env = {"PEPPOL_MIGRATE_TAKEOVER__POLL_S": str(POLL_S), "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": str(POLL_S)}
    rt = Runtime(engine_settings(f"sqlite:///{tmp_path / 'campaign.db'}", sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
    rt.store.set_batch_schedule("b", SCHEDULE, actor="test")
    return rt


def run_until(rt: Runtime, worker_id: str, *, completed: int | None) -> tuple[datetime, Forecast] | None:
    """Run the real loop until ``completed`` migrations have completed, and forecast at that very
    moment (from the worker's callback, right after the completing change was stored); with
    ``completed`` None until idle."""
    stop = threading.Event()
    done: set[int] = set()
    taken: list[tuple[datetime, Forecast]] = []

    def applied(record: MigrationRecord) -> None:
        if record.state is State.COMPLETED:
            done.add(record.id)
            if completed is not None and len(done) >= completed and not taken:
                now = rt.clock.now()
                taken.append((now, batch_forecast(rt.store, "b", now=now)))
                stop.set()

    rt.worker(worker_id=worker_id, on_applied=applied).run(until_idle=True, stop=stop)
    return taken[0] if taken else None


def test_the_forecast_at_half_way_is_within_ten_percent_of_the_actual_finish(tmp_path):
    clock = ManualClock(CAMPAIGN_FROM)
    config = SandboxConfig(
        takeover_delay_s=3 * HOUR,
        propagation_delay_s=HOUR,
        key_ttl_s=21 * 24 * HOUR,
        error_rate=0.05,
        drop_rate=0.02,
        seed=20260326,
    )
    with SandboxServer(config, clock=clock) as sandbox:
        rt = campaign(tmp_path, sandbox, clock)
        total = len(list(rt.store.list_migrations(batch_name="b")))
        before = batch_forecast(rt.store, "b", now=clock.now())
        assert before.finish_at is None and before.last_start_at is not None  # nothing finished: no median yet

        taken = run_until(rt, "worker-first-half", completed=total // 2)
        assert taken is not None
        half_way, predicted = taken
        assert predicted.finish_at is not None, predicted

        run_until(rt, "worker-second-half", completed=None)
        records = list(rt.store.list_migrations(batch_name="b"))
        assert {r.state for r in records} == {State.COMPLETED}
        started = [r.started_at for r in records if r.started_at is not None]
        assert len(started) == total
        first_start = min(started)
        actual = max(r.completed_at for r in records if r.completed_at is not None)

        error_s = abs((predicted.finish_at - actual).total_seconds())
        figure = error_s / (actual - first_start).total_seconds()
        remaining = error_s / (actual - half_way).total_seconds()
        print(
            f"\nforecast accuracy at half-way ({half_way:%a %d %b %H:%M} UTC): forecast "
            f"{predicted.finish_at:%a %d %b %H:%M}, actual {actual:%a %d %b %H:%M} UTC; off by "
            f"{duration_text(error_s)} = {figure:.1%} of the campaign "
            f"({duration_text((actual - first_start).total_seconds())} from the first start), "
            f"{remaining:.1%} of the time left; assumptions: {'; '.join(predicted.assumptions)}"
        )
        assert figure <= TOLERANCE, predicted
        # Every start kept the schedule: inside a window, within the wave caps.
        assert all(SCHEDULE.is_open(s) for s in started)
        per_hour = _buckets(started, SCHEDULE.hour_start)
        per_day = _buckets(started, SCHEDULE.day_start)
        assert max(per_hour.values()) <= 4 and max(per_day.values()) <= 10
        assert batch_forecast(rt.store, "b", now=clock.now()).done
        rt.close()


def _buckets(times: list[datetime], bucket) -> dict[datetime, int]:
    out: dict[datetime, int] = {}
    for at in times:
        out[bucket(at)] = out.get(bucket(at), 0) + 1
    return out


def test_the_store_measures_what_the_forecast_needs(store: Store, clock: ManualClock):
    out, into, new = Direction.FROM_ECONNECT, Direction.TO_ECONNECT, NewMigration
    due = clock.now()
    add(
        store,
        "b",
        *(new(party_id=party(i), direction=out, state=State.REQUESTED, next_run_at=due) for i in range(5)),
        *(new(party_id=party(i), direction=into, state=State.KEY_ISSUED, next_run_at=due) for i in range(5, 9)),
        NewMigration(party_id=party(9), direction=into, state=State.REQUESTED),  # waits for its key
    )
    t0 = clock.now()
    # Three outbound start a minute apart; two of them complete after 2h and 3h.
    for i in range(3):
        change(store, i, new_state=State.KEY_ISSUED, started_at=t0 + timedelta(minutes=i))
    clock.advance(2 * HOUR)
    change(store, 0, new_state=State.COMPLETED)
    clock.advance(HOUR + 60)
    change(store, 1, new_state=State.COMPLETED)
    # One inbound starts, and completes 30 minutes later; another starts and needs a person.
    change(store, 5, new_state=State.TAKEOVER_SUBMITTED, started_at=clock.now())
    change(store, 6, new_state=State.TAKEOVER_SUBMITTED, started_at=clock.now())
    clock.advance(30 * 60)
    change(store, 5, new_state=State.COMPLETED)
    change(store, 6, new_state=State.NEEDS_ATTENTION, failed_state=State.TAKEOVER_SUBMITTED)
    change(store, 7, paused=True)
    now = clock.now()

    inputs = store.forecast_inputs(
        "b", now=now, hour_start=now - timedelta(minutes=31), day_start=now - timedelta(days=1)
    )
    assert inputs is not None
    assert (inputs.not_started, inputs.in_flight, inputs.held, inputs.held_in_flight, inputs.finished) == (
        3,  # outbound 3, 4; inbound 8 (7 is paused)
        1,  # outbound 2
        3,  # 6 needs attention, 7 paused, 9 waits for its key
        1,  # 6 had started
        3,
    )
    assert inputs.started_this_hour == 2 and inputs.started_today == 5
    assert inputs.in_flight_started == (t0 + timedelta(minutes=2), t0 + timedelta(minutes=2))
    assert inputs.durations_s == {out: (3 * HOUR, 2 * HOUR), into: (30 * 60.0,)}
    assert len(inputs.recent_starts) == 5 and inputs.recent_starts[0] == t0
    assert inputs.directions_left == {out, into}
    assert store.forecast_inputs("nope", now=now, hour_start=now, day_start=now) is None
