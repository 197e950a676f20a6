"""The key vault table on SQLite and PostgreSQL: the check value stored with the first key,
checked before anything else; keys sealed for the migration id the import allocates."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.fernet import Fernet

from migration_engine.errors import SecretError, StoredKeyUnreadable
from migration_engine.keys import KEY_SETTING, KeyVault, ScryptParams, key_id_of
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration
from tests.support import TEST_KEK
from tests.support.records import party, sealed

OTHER_KEK = "b3RoZXIta2V5LWVuY3J5cHRpb24ta2V5LTAxMjM0NTY="  # another 32-byte key
CHEAP = ScryptParams(n=2**10)
KEY = "11AAbb$$11AAbb$$"


def vault_rows(run_sql) -> list[tuple[str, str, str]]:
    return [tuple(r) for r in run_sql("SELECT key_id, status, kdf FROM key_vault ORDER BY created_at, key_id")]


def import_keys(store, vault, n: int, batch: str = "b") -> dict[str, str]:
    keys = {party(i): f"{i:02d}AAbb$$KEY{i:03d}" for i in range(n)}
    items = [NewMigration(party_id=p, direction=Direction.TO_ECONNECT, state=State.REQUESTED) for p in keys]
    store.add_migrations(batch_name=batch, items=items, actor="tester", seal=sealed(vault, keys))
    return keys


def test_the_first_open_stores_the_check_value_and_later_opens_check_against_it(store, run_sql):
    assert vault_rows(run_sql) == []
    first = store.open_vault(TEST_KEK)
    assert vault_rows(run_sql) == [(first.key_id, "current", "raw")]
    assert store.open_vault(TEST_KEK).key_id == first.key_id
    with pytest.raises(SecretError, match=f"{KEY_SETTING} is not the key-encryption key") as caught:
        store.open_vault(OTHER_KEK)
    assert OTHER_KEK not in str(caught.value) and TEST_KEK not in str(caught.value)
    assert vault_rows(run_sql) == [(first.key_id, "current", "raw")]
    stored = run_sql("SELECT salt, check_value FROM key_vault")[0]
    assert TEST_KEK not in stored and len(stored[1]) == 64


def test_a_passphrase_vault_keeps_its_salt_and_scrypt_cost(store, run_sql):
    made = store.open_vault("a sufficiently long passphrase", scrypt=CHEAP)
    row = run_sql("SELECT kdf, scrypt_n, scrypt_r, scrypt_p, salt FROM key_vault")[0]
    assert tuple(row[:4]) == ("scrypt", 2**10, 8, 1)
    assert base64.b64decode(row[4]) == made.record.salt
    assert store.open_vault("a sufficiently long passphrase").key_id == made.key_id  # the stored cost
    with pytest.raises(SecretError, match="check value does not match"):
        store.open_vault("a different long passphrase")


def test_two_processes_opening_an_empty_vault_with_different_keys_the_second_is_refused(make_store, run_sql):
    one, two = make_store(), make_store()
    first = one.open_vault(TEST_KEK)
    with pytest.raises(SecretError, match="check value does not match"):
        two.open_vault(OTHER_KEK)
    assert [r[0] for r in vault_rows(run_sql)] == [first.key_id]


def test_a_decrypt_only_open_does_not_store_the_vault(store, run_sql):
    store.open_vault(TEST_KEK, create=False)
    assert vault_rows(run_sql) == []


def test_keys_are_sealed_for_the_migration_id_the_import_allocates(store, run_sql):
    vault = store.open_vault(TEST_KEK)
    keys = import_keys(store, vault, 3)
    records = list(store.list_migrations(batch_name="b"))
    assert {
        r.party_id: vault.decrypt(r.key_ciphertext or "", migration_id=r.id, party_id=r.party_id) for r in records
    } == keys
    assert all(key_id_of(r.key_ciphertext or "") == vault.key_id for r in records)
    created = store.events(records[0].id)[0]
    assert created.kind == "created" and created.detail["has_key"] is True


def test_a_ciphertext_moved_to_another_row_fails_for_that_row_only(store, run_sql):
    vault = store.open_vault(TEST_KEK)
    keys = import_keys(store, vault, 3)
    first, second, third = list(store.list_migrations(batch_name="b"))
    run_sql("UPDATE migrations SET key_ciphertext = :ct WHERE id = :id", ct=first.key_ciphertext, id=second.id)
    moved = store.get(second.id)
    assert moved is not None
    with pytest.raises(StoredKeyUnreadable, match=f"migration {second.id} \\(party {second.party_id}\\)"):
        vault.decrypt(moved.key_ciphertext or "", migration_id=moved.id, party_id=moved.party_id)
    assert (
        vault.decrypt(third.key_ciphertext or "", migration_id=third.id, party_id=third.party_id)
        == keys[third.party_id]
    )
    assert store.open_vault(TEST_KEK).key_id == vault.key_id  # the vault still opens: one row is not the key


def legacy_token(secret: str, key: str) -> str:
    derived = hashlib.sha256(b"peppol-migrate/kek/v1\0" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(derived)).encrypt(key.encode()).decode()


def test_a_database_from_before_the_vault_is_checked_against_its_v1_keys(store, run_sql):
    old_secret = "test-key-encryption-key-0123456789"
    store.add_migrations(
        batch_name="old",
        items=[
            NewMigration(
                party_id=party(1),
                direction=Direction.TO_ECONNECT,
                state=State.KEY_ISSUED,
                key_ciphertext=legacy_token(old_secret, KEY),
            )
        ],
        actor="tester",
    )
    with pytest.raises(SecretError, match=f"{KEY_SETTING} does not open the migration keys already stored \\(v1"):
        store.open_vault("another long passphrase here", scrypt=CHEAP)
    assert vault_rows(run_sql) == []  # a wrong key stores nothing
    vault = store.open_vault(old_secret, scrypt=CHEAP)
    assert vault_rows(run_sql) == [(vault.key_id, "current", "scrypt")]
    record = store.find_party(party(1))[0]
    assert vault.decrypt(record.key_ciphertext or "", migration_id=record.id, party_id=record.party_id) == KEY


def test_a_weak_legacy_key_is_refused_by_commands_but_opens_for_a_rotation(store, run_sql):
    weak = "aaaaaaaaaaaaaaaa"
    store.add_migrations(
        batch_name="old",
        items=[
            NewMigration(
                party_id=party(1),
                direction=Direction.TO_ECONNECT,
                state=State.KEY_ISSUED,
                key_ciphertext=legacy_token(weak, KEY),
            )
        ],
        actor="tester",
    )
    with pytest.raises(SecretError, match="only 1 distinct characters"):
        store.open_vault(weak)
    assert store.open_vault(weak, scrypt=CHEAP, allow_weak=True).opens_legacy(
        store.find_party(party(1))[0].key_ciphertext or ""
    )


def test_a_vault_made_elsewhere_is_the_same_key_only_with_its_record(store):
    made = KeyVault(TEST_KEK)  # a vault never stored (as unit tests build them)
    opened = store.open_vault(TEST_KEK)
    token = made.encrypt(KEY, migration_id=1, party_id="p")
    with pytest.raises(StoredKeyUnreadable, match=f"sealed with key id {made.key_id}"):
        opened.decrypt(token, migration_id=1, party_id="p")
