"""The audit trail covers the rows: keyed chains, the row checked against its chain, anchors and
the export, on both backends, through the store's own functions."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from migration_engine.errors import ConfigError, InputError
from migration_engine.machine import Direction, State, Trigger
from migration_engine.store import Change, EventIn, MigrationRecord, NewMigration, Store
from migration_engine.store.audit import event_hash
from migration_engine.store.audit_verify import PAGE
from tests.support import TEST_AUDIT_KEY
from tests.support.audit import plain_hash

OUT = Direction.FROM_ECONNECT


def _party(i: int) -> str:
    return f"0106:{20000000 + i}"


def _add(store: Store, n: int, *, start: int = 1, batch: str = "b1") -> list[MigrationRecord]:
    items = (NewMigration(party_id=_party(i), direction=OUT, state=State.REQUESTED) for i in range(start, start + n))
    store.add_migrations(batch_name=batch, items=items, actor="tester")
    return [store.find_party(_party(i))[0] for i in range(start, start + n)]


def _advance(store: Store, record: MigrationRecord) -> MigrationRecord:
    """One move with its transition event (and an api_call before it), as the worker makes it."""
    event = EventIn(
        kind="transition", actor="w1", from_state=record.state, to_state=State.KEY_ISSUED, trigger=Trigger.KEY_PREPARED
    )
    call = EventIn(kind="api_call", actor="w1", http_method="POST", http_path="/prepare", http_status=200)
    change = Change(
        migration_id=record.id,
        expected_state=record.state,
        expected_version=record.version,
        new_state=State.KEY_ISSUED,
        events=[call, event],
    )
    moved = store.apply(change)
    assert moved is not None
    return moved


def _reasons(store: Store, **kw: Any) -> dict[int, str]:
    broken = store.verify_audit(**kw)
    assert len({b.migration_id for b in broken}) == len(broken), "a migration reported twice"
    return {b.migration_id: b.reason for b in broken}


def test_the_created_event_binds_party_direction_and_batch(store: Store, run_sql: Callable[..., Any]) -> None:
    [rec] = _add(store, 1)
    [created] = store.events(rec.id)
    assert created.detail["party_id"] == rec.party_id
    assert (created.detail["direction"], created.detail["batch"], created.detail["batch_id"]) == (
        "from-econnect",
        "b1",
        rec.batch_id,
    )
    [row] = run_sql("SELECT * FROM audit_events WHERE migration_id = :m", m=rec.id)
    stored = dict(row._mapping) | {"at": created.at}
    assert event_hash(stored, TEST_AUDIT_KEY.encode()) == created.hash  # keyed: HMAC-SHA256
    assert plain_hash(stored) != created.hash


def test_rows_that_disagree_with_their_chains_are_named(store: Store, run_sql: Callable[..., Any]) -> None:
    a, b, c, d, e = (_advance(store, r) for r in _add(store, 5))
    _add(store, 1, start=9, batch="b2")
    assert store.verify_audit() == []
    run_sql("UPDATE migrations SET state = 'cancelled' WHERE id = :m", m=a.id)
    run_sql("UPDATE migrations SET party_id = :p WHERE id = :m", p="0106:99999999", m=b.id)
    run_sql("UPDATE migrations SET direction = 'to-econnect' WHERE id = :m", m=c.id)
    run_sql("UPDATE migrations SET batch_id = (SELECT id FROM batches WHERE name = 'b2') WHERE id = :m", m=d.id)
    run_sql("UPDATE batches SET name = 'renamed' WHERE name = 'b2'")
    reasons = _reasons(store)
    assert "state is cancelled but the chain's last event (event 3) leaves it key_issued" in reasons[a.id]
    assert f"party_id is 0106:99999999 but the chain was created for {b.party_id}" in reasons[b.id]
    assert "direction is to-econnect but the chain says from-econnect" in reasons[c.id]
    assert "batch is 'renamed'" in reasons[d.id] and "the chain says 'b1'" in reasons[d.id]
    renamed = store.find_party(_party(9))[0].id
    assert "batch is 'renamed'" in reasons[renamed] and "the chain says 'b2'" in reasons[renamed]
    assert e.id not in reasons and len(reasons) == 5


def test_a_chain_rewritten_without_the_key_and_a_forged_migration_are_named(
    store: Store, run_sql: Callable[..., Any]
) -> None:
    [rec, other] = [_advance(store, r) for r in _add(store, 2)]
    rows = run_sql("SELECT * FROM audit_events WHERE migration_id = :m ORDER BY seq", m=rec.id)
    prev = ""
    for row in rows:  # every link recomputed, consistently, with plain SHA-256
        fields = dict(row._mapping) | {"prev_hash": prev}
        fields["at"] = store.events(rec.id)[row.seq - 1].at
        prev = plain_hash(fields)
        run_sql(
            "UPDATE audit_events SET prev_hash = :p, hash = :h WHERE id = :i", p=fields["prev_hash"], h=prev, i=row.id
        )
    # a row with no events at all
    run_sql(
        "INSERT INTO migrations (id, party_id, direction, state, version, attempts, paused, created_at, updated_at, "
        "event_seq) SELECT 500, '0106:55555555', direction, state, 1, 0, paused, created_at, updated_at, 0 "
        "FROM migrations WHERE id = :m",
        m=other.id,
    )
    reasons = _reasons(store)
    assert "does not match its hash" in reasons[rec.id]
    assert "no audit events" in reasons[500]
    assert other.id not in reasons


def test_an_anchor_finds_deletions_truncations_and_rewrites(store: Store, run_sql: Callable[..., Any]) -> None:
    records = [_advance(store, r) for r in _add(store, 4)]
    anchor, broken = store.take_audit_anchor()
    assert anchor is not None and broken == []
    assert [(h.migration_id, h.seq) for h in anchor.heads] == [(r.id, 3) for r in records]
    data = json.loads(json.dumps(store.audit_anchor_json(anchor)))
    back = store.read_audit_anchor(data, source="test")
    assert back == anchor
    assert store.verify_audit(anchor=back) == []

    gone, cut, _, later = records
    run_sql("DELETE FROM audit_events WHERE migration_id = :m", m=gone.id)
    run_sql("DELETE FROM migrations WHERE id = :m", m=gone.id)
    run_sql("DELETE FROM audit_events WHERE migration_id = :m AND seq > 1", m=cut.id)
    run_sql("UPDATE migrations SET event_seq = 1, state = 'requested' WHERE id = :m", m=cut.id)
    _advance(store, _add(store, 1, start=7)[0])  # new since the anchor: fine
    moved = store.apply(
        Change(
            migration_id=later.id,
            expected_state=later.state,
            expected_version=later.version,
            events=[EventIn(kind="observation", actor="w1", from_state=later.state, to_state=later.state)],
        )
    )
    assert moved is not None  # a chain that grew since the anchor: fine
    assert store.verify_audit() == []  # consistent without the anchor
    reasons = _reasons(store, anchor=back)
    assert set(reasons) == {gone.id, cut.id}
    assert "deleted since the anchor" in reasons[gone.id]
    assert "events 2..3 were deleted (truncated)" in reasons[cut.id]


def test_an_anchor_of_a_broken_trail_is_refused_and_a_changed_anchor_too(
    store: Store, run_sql: Callable[..., Any]
) -> None:
    [rec] = _add(store, 1)
    anchor, _ = store.take_audit_anchor()
    assert anchor is not None
    data = store.audit_anchor_json(anchor)
    data["migrations"][0]["party_id"] = "0106:00000000"
    with pytest.raises(InputError, match="changed after it was written"):
        store.read_audit_anchor(data, source="anchor.json")
    with pytest.raises(InputError, match="not a usable audit anchor"):
        store.read_audit_anchor({"format": "something else"}, source="anchor.json")
    run_sql("UPDATE migrations SET state = 'cancelled' WHERE id = :m", m=rec.id)
    none, broken = store.take_audit_anchor()
    assert none is None and [b.migration_id for b in broken] == [rec.id]


def test_verify_pages_through_many_migrations_and_finds_leftover_events(
    store: Store, run_sql: Callable[..., Any], db_url: str
) -> None:
    records = _add(store, PAGE + 5)
    last = records[-1]
    run_sql("UPDATE migrations SET party_id = '0106:88888888' WHERE id = :m", m=last.id)
    reasons = _reasons(store)
    assert list(reasons) == [last.id]
    if db_url.startswith("sqlite"):  # PostgreSQL's foreign key keeps a row's events from losing it
        run_sql("DELETE FROM migrations WHERE id = :m", m=last.id)
        [orphan] = store.verify_audit()
        assert (orphan.migration_id, orphan.party_id) == (last.id, last.party_id)
        assert "row is gone" in orphan.reason


def test_without_an_audit_key_nothing_is_written_or_verified(
    store: Store, make_store: Callable[..., Store], run_sql: Callable[..., Any]
) -> None:
    [rec] = _add(store, 1)
    keyless = make_store(upgrade=False, audit_key=None)
    with pytest.raises(ConfigError, match="PEPPOL_MIGRATE_AUDIT__KEY"):
        keyless.add_migrations(
            batch_name="b9", items=[NewMigration(party_id=_party(50), direction=OUT, state=State.REQUESTED)], actor="t"
        )
    with pytest.raises(ConfigError, match="PEPPOL_MIGRATE_AUDIT__KEY"):
        keyless.apply(
            Change(
                migration_id=rec.id,
                expected_state=rec.state,
                expected_version=rec.version,
                paused=True,
                events=[EventIn(kind="operator", actor="op", from_state=rec.state, to_state=rec.state)],
            )
        )
    with pytest.raises(ConfigError, match="PEPPOL_MIGRATE_AUDIT__KEY"):
        keyless.verify_audit()
    assert keyless.find_party(_party(50)) == [] and run_sql("SELECT count(*) FROM batches WHERE name = 'b9'")[0][0] == 0
    assert keyless.get(rec.id) == rec  # reading needs no key; the refused move wrote nothing
    short = make_store(upgrade=False, audit_key="too-short")
    with pytest.raises(ConfigError, match="shorter than 16"):
        short.verify_audit()


def test_export_gives_each_event_with_party_direction_and_batch(store: Store) -> None:
    a = _advance(store, _add(store, 1)[0])
    _add(store, 1, start=2, batch="b2")
    rows = list(store.export_audit())
    assert [(r["migration_id"], r["seq"]) for r in rows] == [(a.id, 1), (a.id, 2), (a.id, 3), (a.id + 1, 1)]
    assert {(r["party_id"], r["direction"], r["batch"]) for r in rows} == {
        (_party(1), "from-econnect", "b1"),
        (_party(2), "from-econnect", "b2"),
    }
    assert rows[2]["to_state"] == "key_issued" and rows[1]["http_path"] == "/prepare"
    assert [r["batch"] for r in store.export_audit(batch_name="b2")] == ["b2"]
    json.dumps(rows)  # JSON-ready as it is
