"""The back-office use cases on a real store, SQLite and PostgreSQL alike (see conftest.py):
the status figures as aggregate queries, the report's failed-try counts, and `keys export`."""

from __future__ import annotations

import csv
import stat
from datetime import timedelta

import pytest

from migration_engine.backoffice import key_export, overview
from migration_engine.backoffice.batch_report import build
from migration_engine.errors import InputError, SecretError
from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State, Trigger
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import Change, EventIn, NewMigration, Store
from tests.support import TEST_KEK

IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT
VAULT = KeyVault(TEST_KEK)
SETTINGS = with_overrides(Settings(), handoff={"mode": "manual"})


def party(i: int) -> str:
    return f"0106:{20000000 + i}"


def add(store: Store, batch: str, *items: NewMigration) -> None:
    store.add_migrations(batch_name=batch, items=items, actor="tester")


def change(store: Store, i: int, **fields) -> None:
    record = store.find_party(party(i))[0]
    events = [EventIn(kind="transition", actor="w1", from_state=record.state, to_state=fields.get("new_state"))]
    applied = store.apply(
        Change(
            migration_id=record.id,
            expected_state=record.state,
            expected_version=record.version,
            **fields,
            events=events,
        )
    )
    assert applied is not None


def test_status_figures_are_aggregates_per_batch(store, clock):
    add(store, "a", *(NewMigration(party_id=party(i), direction=OUT, state=State.REQUESTED) for i in range(6)))
    add(store, "b", NewMigration(party_id=party(10), direction=IN, state=State.REQUESTED))
    clock.advance(60)
    change(store, 0, new_state=State.COMPLETED)  # an hour and more before `now`
    clock.advance(2 * 3600)
    change(store, 1, new_state=State.COMPLETED)
    change(store, 2, new_state=State.NEEDS_ATTENTION, last_error="gone", last_error_code="API404")
    change(store, 3, attempts=2, last_error="503", last_error_code="HTTP503")  # retrying
    change(store, 4, paused=True, last_error="old", last_error_code="OLD")  # an old error, not retrying
    change(store, 5, new_state=State.CANCELLED, paused=True)  # paused but finished: not counted

    figures = store.status_figures(batch_name="a", since=clock.now() - timedelta(hours=1))
    assert figures.paused == 1
    assert figures.completed_since == 1
    assert figures.errors_by_code == {"API404": 1, "HTTP503": 1}
    assert figures.oldest_waiting is not None
    assert (figures.oldest_waiting.party_id, figures.oldest_waiting.state) == (party(2), State.NEEDS_ATTENTION)

    everything = store.status_figures(since=clock.now() - timedelta(hours=3))
    assert everything.completed_since == 2
    assert everything.oldest_waiting is not None and everything.oldest_waiting.party_id == party(10)
    assert store.status_figures(batch_name="nope", since=clock.now()).oldest_waiting is None

    data = overview.status(store, batch_name="a", now=clock.now())
    assert data["throughput_last_hour"] == 1 and data["paused"] == 1
    assert data["errors_by_code"] == {"API404": 1, "HTTP503": 1}
    assert data["oldest_waiting"]["party_id"] == party(2)


def test_batch_info_and_failed_tries(store, clock):
    assert store.batch_info("spring") is None
    add(store, "spring", NewMigration(party_id=party(1), direction=OUT, state=State.REQUESTED))
    info = store.batch_info("spring")
    assert info is not None and info.name == "spring" and info.created_at == clock.now()
    record = store.find_party(party(1))[0]
    for n in range(3):
        store.apply(
            Change(
                migration_id=record.id,
                expected_state=record.state,
                expected_version=record.version + n,
                attempts=n + 1,
                events=[EventIn(kind="error", actor="w1", from_state=record.state, to_state=record.state)],
            )
        )
    assert store.error_event_counts([record.id, 999]) == {record.id: 3}
    rows = list(build(store, batch_name="spring", now=clock.now()).rows())
    assert [(r["party_id"], r["attempts"], r["failed_tries"]) for r in rows] == [(party(1), 3, 3)]
    with pytest.raises(InputError, match="no batch named"):
        build(store, batch_name="autumn", now=clock.now())


# ---- keys export ----------------------------------------------------------------------------


def issued(store: Store, clock, n: int, batch: str = "out") -> dict[str, str]:
    keys = {party(i): f"{i:02d}AAbb$$KEY{i:03d}" for i in range(n)}
    add(
        store,
        batch,
        *(
            NewMigration(
                party_id=p,
                direction=OUT,
                state=State.KEY_ISSUED,
                new_provider="provider-b",
                key_ciphertext=VAULT.encrypt(k),
                key_issued_at=clock.now(),
            )
            for p, k in keys.items()
        ),
    )
    return keys


def read(path) -> dict[str, dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return {row["party_id"]: row for row in csv.DictReader(fh)}


def test_keys_export_writes_a_private_file_then_marks_delivered(store, clock, tmp_path):
    keys = issued(store, clock, 3)
    add(store, "out", NewMigration(party_id=party(50), direction=IN, state=State.KEY_ISSUED))  # inbound: not ours
    change(store, 2, paused=True)
    clock.advance(10)
    out = tmp_path / "keys.csv"
    result = key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=out, actor="operator:dave")

    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    rows = read(out)
    assert set(rows) == {party(0), party(1)} == set(result.delivered)
    assert rows[party(0)]["migration_key"] == keys[party(0)] and rows[party(0)]["new_provider"] == "provider-b"
    assert [s.party_id for s in result.skipped] == [party(2)] and "paused" in result.skipped[0].why
    assert all(k not in str(result.as_dict()) for k in keys.values())

    moved = store.find_party(party(0))[0]
    assert moved.state is State.KEY_DELIVERED
    assert moved.next_run_at == clock.now() + timedelta(seconds=SETTINGS.takeover.poll_s)
    assert moved.deadline_at == moved.key_issued_at + timedelta(hours=SETTINGS.keys.ttl_h)
    event = store.events(moved.id)[-1]
    assert (event.kind, event.actor, event.trigger) == ("operator", "operator:dave", Trigger.KEY_HANDED_OFF)
    assert event.detail["key"] == "00…00" and event.detail["file"] == str(out)
    assert store.find_party(party(2))[0].state is State.KEY_ISSUED
    assert not store.verify_audit()


def test_keys_export_refuses_to_overwrite_unless_forced(store, clock, tmp_path):
    issued(store, clock, 1)
    (tmp_path / "out").mkdir()
    out = tmp_path / "out" / "keys.csv"
    out.write_text("precious")
    out.chmod(0o644)
    with pytest.raises(InputError, match="--force"):
        key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=out, actor="a")
    assert out.read_text() == "precious" and store.find_party(party(0))[0].state is State.KEY_ISSUED
    key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=out, actor="a", force=True)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and set(read(out)) == {party(0)}
    assert [p.name for p in out.parent.iterdir()] == ["keys.csv"]  # no temporary file left


def test_keys_export_with_nothing_waiting_writes_no_file(store, clock, tmp_path):
    add(store, "out", NewMigration(party_id=party(1), direction=OUT, state=State.REQUESTED))
    result = key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=tmp_path / "k.csv", actor="a")
    assert result.file is None and not (tmp_path / "k.csv").exists()
    with pytest.raises(InputError, match="no batch named"):
        key_export.export_keys(store, VAULT, SETTINGS, batch_name="nope", out=tmp_path / "k.csv", actor="a")


def test_a_wrong_key_encryption_key_leaves_no_file(store, clock, tmp_path):
    issued(store, clock, 2)
    with pytest.raises(SecretError):
        key_export.export_keys(
            store, KeyVault("another-key-encryption-key"), SETTINGS, batch_name="out", out=tmp_path / "k.csv", actor="a"
        )
    assert not (tmp_path / "k.csv").exists()
    assert {r.state for r in store.list_migrations(batch_name="out")} == {State.KEY_ISSUED}


def test_a_crash_after_the_file_exports_the_rest_next_time(store, clock, tmp_path, monkeypatch):
    keys = issued(store, clock, 3)
    real = key_export._deliver
    calls = []

    def crash_after_one(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # the process dies between two moves
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(key_export, "_deliver", crash_after_one)
    with pytest.raises(KeyboardInterrupt):
        key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=tmp_path / "1.csv", actor="a")
    monkeypatch.setattr(key_export, "_deliver", real)
    assert set(read(tmp_path / "1.csv")) == set(keys)  # every key is in the file
    delivered = {r.party_id for r in store.list_migrations(batch_name="out", states=[State.KEY_DELIVERED])}
    assert len(delivered) == 1

    again = key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=tmp_path / "2.csv", actor="a")
    assert set(again.delivered) == set(keys) - delivered
    assert {r["migration_key"] for r in read(tmp_path / "2.csv").values()} == {keys[p] for p in again.delivered}
    assert {r.state for r in store.list_migrations(batch_name="out")} == {State.KEY_DELIVERED}


def test_a_migration_moved_meanwhile_is_reported(store, clock, tmp_path, monkeypatch):
    issued(store, clock, 1)
    real_list = store.list_migrations

    def list_then_move(**kwargs):
        found = list(real_list(**kwargs))
        change(store, 0, new_state=State.KEY_DELIVERED)  # a worker handed it over meanwhile
        return iter(found)

    monkeypatch.setattr(store, "list_migrations", list_then_move)
    result = key_export.export_keys(store, VAULT, SETTINGS, batch_name="out", out=tmp_path / "k.csv", actor="a")
    assert result.delivered == [] and "moved by a worker" in result.skipped[0].why
    assert result.skipped[0].state == "key_delivered"
