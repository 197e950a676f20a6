"""`keys export` on a real store, SQLite and PostgreSQL alike (the db_url fixture): a private
file first, then each migration moved to key_delivered; what it skips, refuses and repeats."""

from __future__ import annotations

import csv
import stat
from datetime import timedelta

import pytest

from migration_engine.backoffice import key_export
from migration_engine.errors import InputError
from migration_engine.keys import KeyVault, ScryptParams
from migration_engine.machine import Direction, State, Trigger
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import NewMigration, Store
from tests.support import TEST_KEK
from tests.support.records import add, change, party, sealed

IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT
VAULT = KeyVault(TEST_KEK)
SETTINGS = with_overrides(Settings(), handoff={"mode": "manual"})


def issued(store: Store, clock, n: int, batch: str = "out") -> dict[str, str]:
    keys = {party(i): f"{i:02d}AAbb$$KEY{i:03d}" for i in range(n)}
    store.add_migrations(
        batch_name=batch,
        items=[
            NewMigration(
                party_id=p, direction=OUT, state=State.KEY_ISSUED, new_provider="provider-b", key_issued_at=clock.now()
            )
            for p in keys
        ],
        actor="tester",
        seal=sealed(VAULT, keys),
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
    other = KeyVault("another-key-encryption-key", scrypt=ScryptParams(n=2**10))
    result = key_export.export_keys(store, other, SETTINGS, batch_name="out", out=tmp_path / "k.csv", actor="a")
    assert result.file is None and not result.exported
    rows = list(store.list_migrations(batch_name="out"))
    assert [s.party_id for s in result.skipped] == [r.party_id for r in rows]
    assert all(f"sealed with key id {VAULT.key_id}, not with the key of" in s.why for s in result.skipped)
    assert not (tmp_path / "k.csv").exists()
    assert {r.state for r in store.list_migrations(batch_name="out")} == {State.KEY_ISSUED}


def test_a_crash_after_the_file_exports_the_rest_next_time(store, clock, tmp_path, monkeypatch):
    keys = issued(store, clock, 3)
    real = key_export._deliver
    calls: list[int] = []

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
