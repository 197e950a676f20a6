"""Batch schedules in the store, on SQLite and PostgreSQL: stored, read back, audited."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import ActiveMigrationExists, InputError, StoreError
from migration_engine.machine import Direction, State, Trigger
from migration_engine.schedule import BatchSchedule, parse_window
from migration_engine.store import Change, EventIn, NewMigration, ScheduleToSet, Store

OUT = Direction.FROM_ECONNECT

EVENINGS = BatchSchedule(
    timezone="Europe/Amsterdam",
    windows=(parse_window("Mon-Fri 19:00-23:00"), parse_window("Sat 08:00-18:00")),
    blackouts=frozenset({date(2027, 12, 25)}),
    start_at=datetime(2027, 3, 22, 18, 0, tzinfo=UTC),
    per_hour=50,
    per_day=300,
    max_in_flight=100,
    priority=5,
)


def add(store: Store, batch: str, first: int, n: int, *, state: State = State.REQUESTED) -> None:
    items = [
        NewMigration(party_id=f"0106:{20000000 + first + i}", direction=OUT, state=state, next_run_at=None)
        for i in range(n)
    ]
    store.add_migrations(batch_name=batch, items=items, actor="tester")


def schedule_events(store: Store, migration_id: int) -> list[dict[str, Any]]:
    return [
        dict(e.detail)
        for e in store.events(migration_id)
        if e.kind == "operator" and e.detail.get("action") == "schedule"
    ]


def test_a_schedule_is_stored_read_back_and_listed(store: Store, clock: ManualClock) -> None:
    add(store, "evenings", 0, 2)
    add(store, "other", 10, 1)
    assert store.batch_schedule("evenings") is None
    assert store.batch_schedules() == {}

    change = store.set_batch_schedule("evenings", EVENINGS, "alice")

    assert change.changed and change.previous is None and change.audited == 2
    assert change.batch.schedule == EVENINGS and change.batch.set_by == "alice"
    assert change.batch.set_at == clock.now()
    assert store.batch_schedule("evenings") == EVENINGS
    found = store.scheduled_batch("evenings")
    assert found is not None and found.set_by == "alice" and found.set_at == clock.now()
    evenings_id = found.batch_id
    assert store.batch_schedules() == {evenings_id: EVENINGS}
    assert [b.batch_name for b in store.scheduled_batches()] == ["evenings"]
    assert store.scheduled_batch("other") is not None and store.batch_schedule("other") is None
    assert store.scheduled_batch("nope") is None and store.batch_schedule("nope") is None


def test_priority_is_kept_in_its_own_column(store: Store, run_sql: Callable[..., list[Any]]) -> None:
    add(store, "evenings", 0, 1)
    store.set_batch_schedule("evenings", EVENINGS, "alice")
    assert run_sql("SELECT priority FROM batches WHERE name = 'evenings'") == [(5,)]
    store.set_batch_schedule("evenings", None, "alice")
    assert run_sql("SELECT priority, schedule FROM batches WHERE name = 'evenings'") == [(0, None)]


def test_every_open_migration_records_the_change_and_verify_passes(store: Store, clock: ManualClock) -> None:
    add(store, "evenings", 0, 3)
    add(store, "evenings-done", 100, 1, state=State.COMPLETED)
    first, second, third = list(store.list_migrations(batch_name="evenings"))
    # one migration moves on first, so its chain is longer than the others'
    moved = store.apply(
        Change(
            migration_id=second.id,
            expected_state=second.state,
            expected_version=second.version,
            new_state=State.CANCELLED,
            events=(
                EventIn(
                    kind="transition",
                    actor="w1",
                    from_state=second.state,
                    to_state=State.CANCELLED,
                    trigger=Trigger.CANCEL,
                ),
            ),
        )
    )
    assert moved is not None and moved.state is State.CANCELLED
    clock.advance(60)

    change = store.set_batch_schedule("evenings", EVENINGS, "alice")
    assert change.audited == 2  # the cancelled migration is finished: no event on it

    for record in (first, third):
        [detail] = schedule_events(store, record.id)
        assert detail["batch"] == "evenings" and detail["previous"] is None
        assert BatchSchedule.from_dict(detail["schedule"]) == EVENINGS
        assert store.events(record.id)[-1].at == clock.now()
        assert store.get(record.id) is not None and store.get(record.id).state is State.REQUESTED  # type: ignore[union-attr]
    assert schedule_events(store, second.id) == []

    clock.advance(60)
    cleared = store.set_batch_schedule("evenings", None, "bob")
    assert cleared.previous == EVENINGS and cleared.batch.schedule is None and cleared.audited == 2
    later = schedule_events(store, first.id)
    assert [d["schedule"] for d in later] == [EVENINGS.as_dict(), None]
    assert later[-1]["previous"] == EVENINGS.as_dict()
    assert store.verify_audit() == []


def test_setting_the_same_schedule_again_writes_nothing(store: Store) -> None:
    add(store, "evenings", 0, 1)
    store.set_batch_schedule("evenings", EVENINGS, "alice")
    [record] = list(store.list_migrations(batch_name="evenings"))
    n_events = len(store.events(record.id))
    again = store.set_batch_schedule("evenings", EVENINGS, "bob")
    assert not again.changed and again.audited == 0 and again.batch.set_by == "alice"
    assert len(store.events(record.id)) == n_events


def test_an_unknown_batch_is_refused(store: Store) -> None:
    with pytest.raises(InputError, match="no batch named 'ghost'"):
        store.set_batch_schedule("ghost", EVENINGS, "alice")


def test_an_unreadable_stored_schedule_is_a_store_error_naming_the_batch(
    store: Store, run_sql: Callable[..., list[Any]]
) -> None:
    add(store, "evenings", 0, 1)
    run_sql("UPDATE batches SET schedule = '{\"timezone\": \"Mars/Olympus\"}' WHERE name = 'evenings'")
    with pytest.raises(StoreError, match=r"'evenings'.*Mars/Olympus"):
        store.batch_schedules()


def test_a_large_batch_is_audited_in_pages(store: Store) -> None:
    add(store, "big", 0, 2500)
    change = store.set_batch_schedule("big", EVENINGS, "alice")
    assert change.audited == 2500
    records = list(store.list_migrations(batch_name="big"))
    for record in (records[0], records[999], records[1000], records[-1]):
        assert len(schedule_events(store, record.id)) == 1
    assert store.verify_audit() == []


def test_an_import_sets_its_schedule_in_its_own_transaction(store: Store, clock: ManualClock) -> None:
    """The batch, its migrations and its schedule are committed together: a worker never sees the
    batch's migrations unpaced; an import that is refused leaves neither batch nor schedule."""
    items = [
        NewMigration(party_id=f"0106:{20000100 + i}", direction=OUT, state=State.REQUESTED, next_run_at=clock.now())
        for i in range(3)
    ]
    to_set = ScheduleToSet(EVENINGS, "alice")
    assert store.add_migrations(batch_name="night", items=items, actor="alice", schedule=to_set) == 3
    assert to_set.change is not None and to_set.change.audited == 3
    assert store.batch_schedule("night") == EVENINGS
    [first, *_] = store.list_migrations()
    assert [e["schedule"] for e in schedule_events(store, first.id)] == [EVENINGS.as_dict()]
    assert store.verify_audit() == []

    twice = [*items[:1], *items[:1]]  # a party twice: the whole import is refused
    refused = ScheduleToSet(EVENINGS, "alice")
    with pytest.raises(ActiveMigrationExists, match="0106:20000100"):
        store.add_migrations(batch_name="refused", items=twice, actor="alice", schedule=refused)
    assert refused.change is None and store.scheduled_batch("refused") is None


def test_a_schedule_change_makes_waiting_migrations_that_have_not_started_due_now(
    store: Store, clock: ManualClock
) -> None:
    """Rows held by the old schedule until its next opening are decided anew under the new one."""
    later = clock.now().replace(year=clock.now().year + 1)
    items = [
        NewMigration(party_id=f"0106:{20000200 + i}", direction=OUT, state=State.REQUESTED, next_run_at=later)
        for i in range(2)
    ]
    store.add_migrations(batch_name="held", items=items, actor="alice")
    store.set_batch_schedule("held", EVENINGS, "alice")
    assert {r.next_run_at for r in store.list_migrations()} == {clock.now()}
