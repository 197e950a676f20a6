"""`keys rotate`'s engine on SQLite and PostgreSQL: batches, audit, resuming, the end state."""

from __future__ import annotations

from datetime import timedelta

import pytest

from migration_engine.backoffice.key_rotation import rotate_keys
from migration_engine.errors import InputError, SecretError, StoredKeyUnreadable
from migration_engine.keys import NEW_KEY_SETTING, KeyVault, key_id_of
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration, WorkerStatus
from tests.support import TEST_KEK
from tests.support.records import party, sealed

NEW_KEK = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg="


class Crash(Exception):
    pass


def seed(store, n: int) -> dict[str, str]:
    vault = store.open_vault(TEST_KEK)
    keys = {party(i): f"{i % 90 + 10:02d}AAbb$$K{i:05d}" for i in range(n)}
    items = [NewMigration(party_id=p, direction=Direction.TO_ECONNECT, state=State.REQUESTED) for p in keys]
    store.add_migrations(batch_name="b", items=items, actor="tester", seal=sealed(vault, keys))
    return keys


def readable(store, vault: KeyVault) -> dict[str, str]:
    return {
        r.party_id: vault.decrypt(r.key_ciphertext or "", migration_id=r.id, party_id=r.party_id)
        for r in store.list_migrations()
        if r.key_ciphertext is not None
    }


def test_rotation_reseals_every_key_audits_each_and_retires_the_old_key(store, run_sql):
    keys = seed(store, 7)
    old_id = store.open_vault(TEST_KEK).key_id
    seen: list[tuple[int, int]] = []
    result = rotate_keys(
        store, old_secret=TEST_KEK, new_secret=NEW_KEK, actor="ops", batch_size=3, on_batch=lambda *a: seen.append(a)
    )
    assert (result.old_key_id, result.resealed, result.already, result.unreadable) == (old_id, 7, 0, [])
    assert seen == [(3, 7), (6, 7), (7, 7)]
    new = store.open_vault(NEW_KEK)
    assert new.key_id == result.new_key_id != old_id
    assert readable(store, new) == keys
    with pytest.raises(SecretError, match="check value does not match"):
        store.open_vault(TEST_KEK)
    statuses = dict(run_sql("SELECT key_id, status FROM key_vault"))
    assert statuses == {old_id: "retired", new.key_id: "current"}
    record = store.find_party(party(0))[0]
    event = store.events(record.id)[-1]
    assert (event.kind, event.actor, event.from_state, event.to_state) == (
        "operator",
        "ops",
        State.REQUESTED,
        State.REQUESTED,
    )
    assert dict(event.detail) == {"action": "keys rotate", "from_key_id": old_id, "to_key_id": new.key_id}
    assert store.verify_audit() == []


def test_a_rotation_killed_midway_resumes_with_the_same_keys(store, run_sql):
    keys = seed(store, 10)

    def crash_after_two(done: int, total: int) -> None:
        if done >= 4:
            raise Crash

    with pytest.raises(Crash):
        rotate_keys(store, old_secret=TEST_KEK, new_secret=NEW_KEK, actor="ops", batch_size=2, on_batch=crash_after_two)
    live = store.live_keys()
    assert set(live) == {"current", "next"}
    assert store.key_counts(live["next"].key_id) == (4, 10)
    assert store.open_vault(TEST_KEK).key_id == live["current"].key_id  # the old key still works meanwhile
    with pytest.raises(SecretError, match=f"a rotation to key id {live['next'].key_id} is under way"):
        rotate_keys(store, old_secret=TEST_KEK, new_secret=TEST_KEK.replace("dGVz", "eGVz"), actor="ops")
    result = rotate_keys(store, old_secret=TEST_KEK, new_secret=NEW_KEK, actor="ops", batch_size=2)
    assert (result.already, result.resealed, result.new_key_id) == (4, 6, live["next"].key_id)
    assert readable(store, store.open_vault(NEW_KEK)) == keys
    per_row = run_sql("SELECT migration_id, COUNT(*) FROM audit_events WHERE kind = 'operator' GROUP BY migration_id")
    assert sorted(n for _, n in per_row) == [1] * 10  # each key resealed (and audited) once


def test_a_key_that_does_not_open_is_listed_and_does_not_block_the_rotation(store, run_sql):
    seed(store, 3)
    first, second, _ = list(store.list_migrations())
    run_sql("UPDATE migrations SET key_ciphertext = :ct WHERE id = :id", ct=first.key_ciphertext, id=second.id)
    result = rotate_keys(store, old_secret=TEST_KEK, new_secret=NEW_KEK, actor="ops")
    assert result.resealed == 2
    assert [(m, p) for m, p, _ in result.unreadable] == [(second.id, second.party_id)]
    assert "sealed for another migration" in result.unreadable[0][2]
    new = store.open_vault(NEW_KEK)
    moved = store.get(second.id)
    assert moved is not None and key_id_of(moved.key_ciphertext or "") == result.old_key_id
    with pytest.raises(StoredKeyUnreadable):
        new.decrypt(moved.key_ciphertext or "", migration_id=moved.id, party_id=moved.party_id)


def test_rotation_refusals_come_before_anything_is_written(store, run_sql, clock):
    seed(store, 2)
    before = run_sql("SELECT id, key_ciphertext, version FROM migrations ORDER BY id")
    with pytest.raises(SecretError, match=NEW_KEY_SETTING):
        rotate_keys(store, old_secret=TEST_KEK, new_secret="", actor="ops")
    with pytest.raises(SecretError, match="is the current key"):
        rotate_keys(store, old_secret=TEST_KEK, new_secret=TEST_KEK, actor="ops")
    with pytest.raises(SecretError, match="PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY is not the key-encryption key"):
        rotate_keys(store, old_secret=NEW_KEK, new_secret=TEST_KEK.replace("dGVz", "eGVz"), actor="ops")
    with pytest.raises(SecretError, match=f"{NEW_KEY_SETTING} is a passphrase of 5 characters"):
        rotate_keys(store, old_secret=TEST_KEK, new_secret="short", actor="ops")
    now = clock.now()
    store.record_worker(
        WorkerStatus(
            worker_id="host:1:abc",
            started_at=now,
            heartbeat_at=now,
            alive_until=now + timedelta(seconds=30),
            stopped_at=None,
            circuit="closed",
            circuit_reason=None,
            steps_run=0,
        )
    )
    with pytest.raises(InputError, match="stop every worker first; running: host:1:abc"):
        rotate_keys(store, old_secret=TEST_KEK, new_secret=NEW_KEK, actor="ops")
    assert run_sql("SELECT id, key_ciphertext, version FROM migrations ORDER BY id") == before
    assert [s for (s,) in run_sql("SELECT status FROM key_vault")] == ["current"]
