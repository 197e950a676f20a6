"""The store (migration_engine.store, the Store facade) and its contract, run on SQLite and
PostgreSQL alike (the db_url fixture in tests/conftest.py)."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from migration_engine.clock import ManualClock
from migration_engine.errors import ActiveMigrationExists, SchemaOutOfDate, StoreError
from migration_engine.machine import TERMINAL_STATES, Direction, State, Trigger
from migration_engine.store import (
    UNCHANGED,
    Change,
    EventIn,
    MigrationRecord,
    NewMigration,
    Store,
)
from migration_engine.store.audit import event_hash
from migration_engine.store.schema import OPEN_STATE_PREDICATE, metadata
from migration_engine.store.versioning import SCHEMA_HEAD, head_revisions
from tests.support import TEST_AUDIT_KEY

IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT
LEASE_S = 60.0


def party(i: int) -> str:
    return f"0106:{10000000 + i}"


def new(
    i: int,
    *,
    direction: Direction = OUT,
    state: State = State.REQUESTED,
    due: datetime | None = None,
    **kw: Any,
) -> NewMigration:
    return NewMigration(party_id=party(i), direction=direction, state=state, next_run_at=due, **kw)


def add(store: Store, *items: NewMigration, batch: str | None = "b1") -> list[MigrationRecord]:
    store.add_migrations(batch_name=batch, items=items, actor="tester")
    return [store.find_party(item.party_id)[0] for item in items]


def move(record: MigrationRecord, dest: State | None, *events: EventIn, **fields: Any) -> Change:
    return Change(
        migration_id=record.id,
        expected_state=record.state,
        expected_version=record.version,
        new_state=dest,
        events=events,
        **fields,
    )


def transition(record: MigrationRecord, dest: State, trigger: Trigger, **detail: Any) -> EventIn:
    return EventIn(
        kind="transition", actor="w1", from_state=record.state, to_state=dest, trigger=trigger, detail=detail
    )


# ---- schema -------------------------------------------------------------------------------


def test_upgrade_from_empty_produces_exactly_the_models_schema(make_store: Callable[..., Store], db_url: str) -> None:
    store = make_store(upgrade=False)
    with pytest.raises(SchemaOutOfDate, match="db upgrade"):
        store.check_schema()
    store.upgrade()
    store.check_schema()
    store.upgrade()  # at head already: a no-op
    store.check_schema()

    url = sa.make_url(db_url)
    if url.get_backend_name() == "postgresql":
        url = url.set(drivername="postgresql+psycopg")
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), metadata) == []
            # compare_metadata ignores partial indexes' predicates: check those by hand.
            reflected = {ix["name"]: ix for ix in sa.inspect(conn).get_indexes("migrations")}
    finally:
        engine.dispose()
    open_party = reflected["uq_migrations_open_party"]
    assert open_party["unique"] and open_party["column_names"] == ["party_id"]
    predicate = str(next(v for k, v in open_party.get("dialect_options", {}).items() if k.endswith("_where")))
    assert "completed" in predicate and "cancelled" in predicate
    due = reflected["ix_migrations_due"]
    assert due["column_names"] == ["next_run_at", "id"]
    due_predicate = str(next(v for k, v in due.get("dialect_options", {}).items() if k.endswith("_where")))
    assert "next_run_at" in due_predicate and "paused" in due_predicate


def test_check_schema_refuses_unknown_revision_and_missing_tables(store: Store, run_sql: Callable[..., Any]) -> None:
    run_sql("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(SchemaOutOfDate, match="newer"):
        store.check_schema()
    run_sql("UPDATE alembic_version SET version_num = '0001'")
    with pytest.raises(SchemaOutOfDate, match="db upgrade"):
        store.check_schema()  # a known but older revision
    (head,) = head_revisions()
    run_sql("UPDATE alembic_version SET version_num = :head", head=head)
    store.check_schema()
    run_sql("DROP TABLE audit_events")
    with pytest.raises(SchemaOutOfDate, match="audit_events"):
        store.check_schema()


def test_the_schema_head_constant_is_alembics_head() -> None:
    # check_schema trusts SCHEMA_HEAD without importing Alembic: a new revision must move it.
    assert head_revisions() == {SCHEMA_HEAD}


def test_open_state_predicate_matches_the_machine() -> None:
    for state in State:
        assert (f"'{state.value}'" in OPEN_STATE_PREDICATE) == (state in TERMINAL_STATES)


# ---- import ----------------------------------------------------------------------------


def test_add_migrations_writes_rows_batch_and_created_events(store: Store, clock: ManualClock) -> None:
    batch_id = store.ensure_batch("b1", source="batch.csv")
    assert store.ensure_batch("b1") == batch_id
    due = clock.now()
    count = store.add_migrations(
        batch_name="b1",
        items=[
            new(1, due=due),
            new(2, direction=IN, profile="default", key_ciphertext="ct", key_issued_at=due),
        ],
        actor="alice",
    )
    assert count == 2
    one, two = store.find_party(party(1))[0], store.find_party(party(2))[0]
    assert (one.batch_id, one.batch_name, one.direction, one.state) == (batch_id, "b1", OUT, State.REQUESTED)
    assert (one.version, one.attempts, one.paused, one.next_run_at, one.created_at) == (1, 0, False, due, due)
    assert (two.profile, two.key_ciphertext, two.key_issued_at, two.next_run_at) == (
        "default",
        "ct",
        due,
        None,
    )
    [created] = store.events(one.id)
    assert (created.seq, created.kind, created.actor, created.to_state, created.prev_hash) == (
        1,
        "created",
        "alice",
        State.REQUESTED,
        "",
    )
    assert created.detail == {
        "party_id": one.party_id,
        "batch": "b1",
        "batch_id": batch_id,
        "direction": "from-econnect",
        "has_key": False,
    }
    assert len(created.hash) == 64
    assert store.get(one.id) == one
    assert store.get(10**6) is None
    assert store.add_migrations(batch_name=None, items=[new(3)], actor="alice") == 1
    assert store.find_party(party(3))[0].batch_name is None


def test_add_migrations_is_all_or_nothing(store: Store, run_sql: Callable[..., Any]) -> None:
    add(store, new(2400))
    items = (new(i) for i in range(2500))  # streamed; party 2400's conflict is in the third chunk
    with pytest.raises(ActiveMigrationExists, match=re.escape(party(2400))):
        store.add_migrations(batch_name="big", items=items, actor="alice", chunk_size=1000, batch_source="x.csv")
    assert store.counts() == [(OUT, State.REQUESTED, 1)]
    assert run_sql("SELECT name FROM batches") == [("b1",)]  # the new batch went too
    assert run_sql("SELECT count(*) FROM audit_events") == [(1,)]

    def failing() -> Any:
        yield new(1)
        raise RuntimeError("row 2 is bad")

    with pytest.raises(RuntimeError):
        store.add_migrations(batch_name="big", items=failing(), actor="alice")
    assert store.counts() == [(OUT, State.REQUESTED, 1)]
    assert store.add_migrations(batch_name="big", items=[new(1)], actor="alice", batch_source="x.csv") == 1
    assert run_sql("SELECT name, source FROM batches ORDER BY id") == [("b1", None), ("big", "x.csv")]


def test_add_migrations_refuses_a_party_twice_in_one_import(store: Store) -> None:
    with pytest.raises(ActiveMigrationExists, match="twice"):
        store.add_migrations(batch_name="b", items=[new(1), new(2), new(1, direction=IN)], actor="a")
    assert store.counts() == []


def test_partial_unique_index_allows_one_open_migration_per_party(
    store: Store, run_sql: Callable[..., Any], clock: ManualClock
) -> None:
    [first] = add(store, new(1))
    done = store.apply(move(first, State.CANCELLED))
    assert done is not None and done.completed_at == clock.now() and done.next_run_at is None
    [second] = add(store, new(1, direction=IN))  # the cancelled one does not count
    assert [r.id for r in store.find_party(party(1))] == [second.id, first.id]  # newest first
    assert store.active_party_ids([party(1), party(2)]) == {party(1)}
    with pytest.raises(ActiveMigrationExists):
        add(store, new(1))
    # The index itself is the guard, beneath the friendly check.
    with pytest.raises(sa.exc.IntegrityError):
        run_sql(
            "INSERT INTO migrations (party_id, direction, state, version, attempts, paused, created_at, "
            "updated_at, event_seq) VALUES (:p, 'to-econnect', 'key_issued', 1, 0, false, :t, :t, 0)",
            p=party(1),
            t=clock.now().replace(tzinfo=None),
        )
    # A CAS that would reopen the cancelled one collides with the open one: translated.
    with pytest.raises(ActiveMigrationExists):
        store.apply(move(done, State.REQUESTED))


def test_active_party_ids_batches_large_lookups(store: Store) -> None:
    store.add_migrations(batch_name=None, items=(new(i) for i in range(0, 1200, 2)), actor="a")
    wanted = [party(i) for i in range(1200)]
    assert store.active_party_ids(wanted) == {party(i) for i in range(0, 1200, 2)}


# ---- claiming ----------------------------------------------------------------------------


def test_claim_due_respects_due_time_paused_terminal_leases_and_limit(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    due_early, due_late, future, unscheduled, paused, cancelled, leased = add(
        store,
        new(1, due=now - timedelta(minutes=5)),
        new(2, due=now),
        new(3, due=now + timedelta(seconds=1)),
        new(4, due=None),
        new(5, due=now - timedelta(minutes=9)),
        new(6, due=now - timedelta(minutes=9)),
        new(7, due=now - timedelta(minutes=9)),
    )
    assert store.apply(move(paused, None, paused=True)) is not None
    assert store.apply(move(cancelled, State.CANCELLED, next_run_at=now - timedelta(minutes=9))) is not None
    [got] = store.claim_due(worker_id="other", limit=1, lease_s=LEASE_S)
    assert got.id == leased.id  # the oldest due

    first = store.claim_due(worker_id="w1", limit=1, lease_s=LEASE_S)
    assert [r.id for r in first] == [due_early.id]
    rest = store.claim_due(worker_id="w1", limit=10, lease_s=LEASE_S)
    assert [r.id for r in rest] == [due_late.id]
    claimed = first[0]
    assert claimed.lease_owner == "w1"
    assert claimed.lease_until == now + timedelta(seconds=LEASE_S)
    assert claimed.version == due_early.version + 1
    assert claimed.updated_at == due_early.updated_at  # a lease is not a change of the migration
    assert store.claim_due(worker_id="w1", limit=10, lease_s=LEASE_S) == []
    assert store.claim_due(worker_id="w1", limit=0, lease_s=LEASE_S) == []

    clock.advance(1)
    assert [r.id for r in store.claim_due(worker_id="w1", limit=10, lease_s=LEASE_S)] == [future.id]
    assert unscheduled.next_run_at is None


def test_expired_lease_is_reclaimed_and_the_stale_worker_cannot_apply(store: Store, clock: ManualClock) -> None:
    add(store, new(1, due=clock.now()))
    [mine] = store.claim_due(worker_id="w1", limit=5, lease_s=LEASE_S)
    clock.advance(LEASE_S - 1)
    assert store.claim_due(worker_id="w2", limit=5, lease_s=LEASE_S) == []
    assert store.renew_lease(migration_id=mine.id, worker_id="w1", version=mine.version, lease_s=LEASE_S)
    clock.advance(LEASE_S - 1)
    assert store.claim_due(worker_id="w2", limit=5, lease_s=LEASE_S) == []  # renewed
    clock.advance(2)
    [theirs] = store.claim_due(worker_id="w2", limit=5, lease_s=LEASE_S)  # w1 crashed, say
    assert theirs.id == mine.id and theirs.lease_owner == "w2" and theirs.version == mine.version + 1

    stale = move(mine, State.KEY_ISSUED, transition(mine, State.KEY_ISSUED, Trigger.KEY_PREPARED), lease_owner="w1")
    assert store.apply(stale) is None
    assert not store.renew_lease(migration_id=mine.id, worker_id="w1", version=mine.version, lease_s=LEASE_S)
    assert len(store.events(mine.id)) == 1  # nothing written

    # Even with the right version, a CAS naming another lease owner does not match.
    wrong_owner = move(theirs, State.KEY_ISSUED, lease_owner="w1")
    assert store.apply(wrong_owner) is None
    done = store.apply(move(theirs, State.KEY_ISSUED, lease_owner="w2"))
    assert done is not None and done.lease_owner is None and done.lease_until is None
    assert done.version == theirs.version + 1


@pytest.mark.parametrize("shared_store", [True, False], ids=["one-store", "store-per-thread"])
def test_concurrent_claims_never_hand_out_the_same_row(
    make_store: Callable[..., Store], clock: ManualClock, shared_store: bool
) -> None:
    first = make_store()
    n_rows, n_threads = 300, 6
    start = clock.now() - timedelta(hours=1)
    first.add_migrations(
        batch_name=None, items=[new(i, due=start + timedelta(seconds=i)) for i in range(n_rows)], actor="a"
    )
    stores = [first if shared_store else make_store(upgrade=False) for _ in range(n_threads)]
    barrier = threading.Barrier(n_threads)
    claimed: list[list[int]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            barrier.wait()
            while batch := stores[k].claim_due(worker_id=f"w{k}", limit=7, lease_s=LEASE_S):
                claimed[k].extend(r.id for r in batch)
                assert all(r.lease_owner == f"w{k}" for r in batch)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    every = [mid for ids in claimed for mid in ids]
    assert len(every) == len(set(every)) == n_rows


def test_work_summary_and_counts(store: Store, clock: ManualClock) -> None:
    now = clock.now()
    assert store.work_summary().idle
    assert store.work_summary().next_run_at is None
    add(store, new(1, due=now), new(2, due=now - timedelta(minutes=1)), batch="b1")
    add(store, new(3, due=now + timedelta(minutes=5)), new(4, direction=IN), batch="b2")
    add(store, new(5, due=now + timedelta(minutes=1)), batch=None)
    paused = store.find_party(party(5))[0]
    assert store.apply(move(paused, None, paused=True)) is not None

    summary = store.work_summary()
    assert (summary.due_now, summary.leased, summary.scheduled_later) == (2, 0, 1)
    assert summary.next_run_at == now - timedelta(minutes=1)
    assert summary.next_run_at.tzinfo is UTC

    [claimed] = store.claim_due(worker_id="w1", limit=1, lease_s=LEASE_S)
    summary = store.work_summary()
    assert (summary.due_now, summary.leased, summary.scheduled_later) == (1, 1, 1)
    assert summary.next_run_at == now
    done = store.apply(move(claimed, State.COMPLETED, lease_owner="w1"))
    assert done is not None
    clock.advance(3600)
    summary = store.work_summary()
    assert (summary.due_now, summary.leased, summary.scheduled_later) == (2, 0, 0)

    assert store.counts() == [(OUT, State.COMPLETED, 1), (OUT, State.REQUESTED, 3), (IN, State.REQUESTED, 1)]
    assert store.counts(batch_name="b2") == [(OUT, State.REQUESTED, 1), (IN, State.REQUESTED, 1)]
    assert store.counts(batch_name="nope") == []
    assert sum(n for _, _, n in store.counts()) == 5


# ---- moving ------------------------------------------------------------------------------


def test_apply_is_a_compare_and_set_that_chains_audit_events(store: Store, clock: ManualClock) -> None:
    [rec] = add(store, new(1, due=clock.now()))
    clock.advance(10)
    issued_at = clock.now()
    events = [
        EventIn(
            kind="api_call",
            actor="w1",
            http_method="GET",
            http_path="/api/v1/peppol/x/prepareToMigrate",
            http_status=200,
            duration_ms=12,
            request_id="req-1",
        ),
        transition(rec, State.KEY_ISSUED, Trigger.KEY_PREPARED, key="AB…$$"),
    ]
    after = store.apply(
        move(
            rec,
            State.KEY_ISSUED,
            *events,
            key_ciphertext="ct",
            key_issued_at=issued_at,
            attempts=0,
            next_run_at=issued_at + timedelta(seconds=5),
            deadline_at=issued_at + timedelta(hours=1),
            last_error=None,
            failed_state=UNCHANGED,
        )
    )
    assert after is not None
    assert (after.state, after.version, after.key_ciphertext, after.key_issued_at) == (
        State.KEY_ISSUED,
        rec.version + 1,
        "ct",
        issued_at,
    )
    assert (after.updated_at, after.completed_at, after.created_at) == (issued_at, None, rec.created_at)
    assert after.batch_name == "b1" and after == store.get(rec.id)

    # The same expectation again: no longer matches, nothing written.
    assert store.apply(move(rec, State.KEY_ISSUED, *events)) is None
    assert store.get(rec.id) == after

    clock.advance(5)
    failed = store.apply(
        move(
            after,
            State.NEEDS_ATTENTION,
            transition(after, State.NEEDS_ATTENTION, Trigger.FAIL),
            failed_state=State.KEY_ISSUED,
            last_error="HTTP 500 boom",
            last_error_code="HTTP500",
            attempts=5,
            next_run_at=None,
        )
    )
    assert failed is not None
    assert (
        failed.failed_state,
        failed.last_error,
        failed.last_error_code,
        failed.attempts,
        failed.next_run_at,
    ) == (State.KEY_ISSUED, "HTTP 500 boom", "HTTP500", 5, None)
    rescheduled = store.apply(move(failed, None, EventIn(kind="operator", actor="bob", detail={"action": "note"})))
    assert rescheduled is not None and rescheduled.state is State.NEEDS_ATTENTION
    assert rescheduled.failed_state is State.KEY_ISSUED  # UNCHANGED by default

    trail = store.events(rec.id)
    assert [e.seq for e in trail] == [1, 2, 3, 4, 5]
    assert [e.kind for e in trail] == ["created", "api_call", "transition", "transition", "operator"]
    assert trail[0].prev_hash == ""
    for before, event in itertools.pairwise(trail):
        assert event.prev_hash == before.hash
    call, moved = trail[1], trail[2]
    assert (call.http_method, call.http_status, call.duration_ms, call.request_id, call.at) == (
        "GET",
        200,
        12.0,
        "req-1",
        issued_at,
    )
    assert (moved.from_state, moved.to_state, moved.trigger, moved.detail) == (
        State.REQUESTED,
        State.KEY_ISSUED,
        Trigger.KEY_PREPARED,
        {"key": "AB…$$"},
    )
    assert store.verify_audit() == []


def test_apply_refuses_bad_events_and_writes_nothing(store: Store) -> None:
    [rec] = add(store, new(1))
    with pytest.raises(ValueError, match="kind"):
        store.apply(move(rec, State.KEY_ISSUED, EventIn(kind="gossip", actor="w1")))
    with pytest.raises(ValueError, match="JSON"):
        store.apply(move(rec, State.KEY_ISSUED, EventIn(kind="operator", actor="w1", detail={"x": object()})))
    assert store.get(rec.id) == rec
    assert len(store.events(rec.id)) == 1


def test_list_migrations_pages_and_filters(store: Store) -> None:
    store.add_migrations(batch_name="big", items=(new(i) for i in range(2100)), actor="a")
    add(store, new(5000), batch="small")
    rows = list(store.list_migrations(batch_name="big"))
    assert len(rows) == 2100 and [r.id for r in rows] == sorted(r.id for r in rows)
    assert {r.batch_name for r in rows} == {"big"}
    assert len(list(store.list_migrations())) == 2101
    assert list(store.list_migrations(states=[State.COMPLETED])) == []
    assert list(store.list_migrations(states=[])) == []
    assert [r.party_id for r in store.list_migrations(batch_name="small", states=[State.REQUESTED])] == [party(5000)]


def test_datetimes_are_utc_aware_on_the_way_in_and_out(store: Store, clock: ManualClock) -> None:
    cest = timezone(timedelta(hours=2))
    local = datetime(2026, 6, 1, 14, 30, 15, 123456, tzinfo=cest)
    [rec] = add(store, new(1, due=local, key_issued_at=local))
    for value in (rec.next_run_at, rec.key_issued_at, rec.created_at, rec.updated_at):
        assert value is not None and value.tzinfo is UTC
    assert rec.next_run_at == local and rec.next_run_at.hour == 12 and rec.next_run_at.microsecond == 123456
    assert store.events(rec.id)[0].at.tzinfo is UTC
    with pytest.raises(StoreError, match="naive"):
        store.apply(move(rec, None, next_run_at=datetime(2026, 6, 1, 12, 0)))
    assert store.get(rec.id) == rec


# ---- audit ----------------------------------------------------------------------------------


def _trail(store: Store, clock: ManualClock, i: int, steps: int = 4) -> MigrationRecord:
    [rec] = add(store, new(i))
    for k in range(steps):
        clock.advance(1)
        nxt = store.apply(move(rec, None, EventIn(kind="observation", actor="w1", detail={"poll": k})))
        assert nxt is not None
        rec = nxt
    return rec


def test_verify_audit_detects_a_changed_detail(store: Store, clock: ManualClock, run_sql: Callable[..., Any]) -> None:
    rec = _trail(store, clock, 1)
    ok = _trail(store, clock, 2)
    assert store.verify_audit() == []
    run_sql("UPDATE audit_events SET detail = :d WHERE migration_id = :m AND seq = 3", d='{"poll":99}', m=rec.id)
    [broken] = store.verify_audit()
    assert (broken.migration_id, broken.party_id, broken.seq) == (rec.id, party(1), 3)
    assert "changed" in broken.reason
    assert ok.id != broken.migration_id


def test_verify_audit_detects_a_rehashed_event_by_the_next_link(
    store: Store, clock: ManualClock, run_sql: Callable[..., Any]
) -> None:
    rec = _trail(store, clock, 1)
    row = store.events(rec.id)[1]
    forged = {
        "migration_id": rec.id,
        "seq": row.seq,
        "at": row.at,
        "actor": "mallory",
        "kind": row.kind,
        "from_state": None,
        "to_state": None,
        "trigger": None,
        "http_method": None,
        "http_path": None,
        "http_status": None,
        "duration_ms": None,
        "request_id": None,
        "detail": '{"poll":0}',
        "prev_hash": row.prev_hash,
    }
    forged_hash = event_hash(forged, TEST_AUDIT_KEY.encode())
    run_sql("UPDATE audit_events SET actor = 'mallory', hash = :h WHERE id = :id", h=forged_hash, id=row.id)
    [broken] = store.verify_audit()
    assert broken.seq == row.seq + 1 and "prev_hash" in broken.reason


def test_verify_audit_detects_deleted_events(store: Store, clock: ManualClock, run_sql: Callable[..., Any]) -> None:
    middle = _trail(store, clock, 1)
    last = _trail(store, clock, 2)
    run_sql("DELETE FROM audit_events WHERE migration_id = :m AND seq = 2", m=middle.id)
    run_sql("DELETE FROM audit_events WHERE migration_id = :m AND seq = 5", m=last.id)
    broken = {b.migration_id: b for b in store.verify_audit()}
    assert (broken[middle.id].seq, broken[last.id].seq) == (2, 5)
    assert "missing" in broken[middle.id].reason and "missing" in broken[last.id].reason
    # The chain goes on after a break: later events still link to whatever head there is.
    nxt = store.apply(move(last, None, EventIn(kind="observation", actor="w1")))
    assert nxt is not None
    assert store.verify_audit()[-1].seq == 5


def test_in_memory_sqlite_works_for_single_threaded_tests(clock: ManualClock) -> None:
    store = Store("sqlite://", clock=clock, audit_key=TEST_AUDIT_KEY)
    try:
        store.upgrade()
        store.check_schema()
        add(store, new(1, due=clock.now()))
        [claimed] = store.claim_due(worker_id="w1", limit=5, lease_s=LEASE_S)
        step = transition(claimed, State.KEY_ISSUED, Trigger.KEY_RECEIVED)
        assert store.apply(move(claimed, State.KEY_ISSUED, step, lease_owner="w1")) is not None
        assert store.verify_audit() == []
    finally:
        store.close()
