"""Migration key rules (peppol-commons CSMLDefaultTest vectors), masking and encryption at rest."""

import base64
import hashlib
import os

import pytest
from cryptography.fernet import Fernet
from hypothesis import given, settings
from hypothesis import strategies as st

from migration_engine.errors import SecretError, StoredKeyUnreadable
from migration_engine.keys import (
    DEFAULT_SCRYPT,
    KEY_SETTING,
    NEW_KEY_SETTING,
    RAW,
    SCRYPT,
    KeyVault,
    ScryptParams,
    generate_key,
    is_valid_key,
    key_id_of,
    key_problem,
    mask,
    raw_key,
    secret_problem,
)
from tests.support import TEST_KEK


@pytest.mark.parametrize("key", ["11AAbb$$", "1Ab$1Ab$", "11AAbb$$11AAbb$$11AAbb$$"])
def test_published_valid_keys(key):
    assert is_valid_key(key)


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("11AAbb$$11AAbb$$11AAbb$$1", "at most 24"),
        ("11AAbb$", "at least 8"),
        ("11AAZb$$", "lower-case"),
        ("11AAbbz$", "special"),
        ("11AA bb$$", "white space"),
        ("", "empty"),
        ("11AAbb__", "special"),
        ("abc123-def456-ghi789", "upper-case"),
    ],
)
def test_published_invalid_keys_say_why(key, why):
    problem = key_problem(key)
    assert problem is not None and why in problem
    if len(key) >= 12:
        assert key not in problem


def test_generated_keys_are_valid_and_differ():
    keys = {generate_key() for _ in range(2000)}
    assert len(keys) == 2000
    assert all(is_valid_key(k) for k in keys)
    assert all(is_valid_key(generate_key(8)) for _ in range(500))


def test_mask_shows_at_most_four_characters():
    assert mask("11AAbb$$11AAbb$$11AAbb$$") == "11…$$"
    assert mask("11AAbb$$") == "………"
    assert mask(None) == ""


CHEAP = ScryptParams(n=2**10)  # tests build many vaults; the default is checked apart
PASSPHRASE = "a sufficiently long passphrase"
KEY = "11AAbb$$11AAbb$$"
RAW_VAULT = KeyVault(TEST_KEK)


def test_a_32_byte_base64_key_is_used_as_is_in_either_alphabet_with_or_without_padding():
    data = bytes(range(200, 232))
    for text in (
        base64.b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode(),
        base64.urlsafe_b64encode(data).decode().rstrip("="),
        f"  {base64.b64encode(data).decode()}\n",
    ):
        assert raw_key(text) == data
    assert raw_key(base64.b64encode(os.urandom(31)).decode()) is None  # 31 bytes: a passphrase
    assert raw_key(PASSPHRASE) is None
    assert RAW_VAULT.record.kdf == RAW and RAW_VAULT.record.scrypt is None


def test_a_passphrase_is_stretched_with_scrypt_at_the_documented_default_cost():
    assert (DEFAULT_SCRYPT.n, DEFAULT_SCRYPT.r, DEFAULT_SCRYPT.p) == (2**17, 8, 1)
    vault = KeyVault(PASSPHRASE)  # the real default, once
    assert vault.record.kdf == SCRYPT and vault.record.scrypt == DEFAULT_SCRYPT
    assert len(vault.record.salt) == 16
    again = KeyVault(PASSPHRASE, record=vault.record)  # the stored cost is used, not the argument's
    token = vault.encrypt(KEY, migration_id=1, party_id="p")
    assert again.decrypt(token, migration_id=1, party_id="p") == KEY


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        (None, "no key-encryption key: set PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY"),
        ("", "no key-encryption key"),
        ("short", "passphrase of 5 characters; a passphrase needs at least 16"),
        ("fifteen-chars-x", "of 15 characters"),
        ("aaaaaaaaaaaaaaaa", "only 1 distinct characters"),
        ("abababababababababababab", "only 2 distinct characters"),
        (base64.b64encode(bytes(32)).decode(), "not random"),
    ],
)
def test_a_missing_or_weak_key_is_refused_naming_the_setting_never_the_key(secret, why):
    with pytest.raises(SecretError, match=KEY_SETTING) as caught:
        KeyVault(secret, scrypt=CHEAP)
    assert why in str(caught.value)
    if secret and len(secret) >= 12:
        assert secret not in str(caught.value)
    assert secret_problem(secret) == str(caught.value)


def test_a_weak_passphrase_is_accepted_only_when_asked_for_and_the_setting_is_named():
    assert KeyVault("aaaaaaaaaaaaaaaa", scrypt=CHEAP, allow_weak=True).record.kdf == SCRYPT
    with pytest.raises(SecretError, match=NEW_KEY_SETTING):
        KeyVault("short", setting=NEW_KEY_SETTING)
    with pytest.raises(SecretError):
        KeyVault("", allow_weak=True)


def test_the_check_value_tells_the_right_key_from_a_wrong_one():
    made = KeyVault(PASSPHRASE, scrypt=CHEAP)
    assert KeyVault(PASSPHRASE, record=made.record).key_id == made.key_id
    with pytest.raises(SecretError, match=rf"{KEY_SETTING} is not the key-encryption key .*\(key id {made.key_id}:"):
        KeyVault("another long passphrase here", record=made.record)
    with pytest.raises(SecretError, match=r"it is a 32-byte base64 key, they were sealed with a passphrase"):
        KeyVault(TEST_KEK, record=made.record)
    with pytest.raises(SecretError, match=r"it is a passphrase, they were sealed with a 32-byte base64 key"):
        KeyVault(PASSPHRASE, record=RAW_VAULT.record)
    other_raw = base64.b64encode(os.urandom(32)).decode()
    with pytest.raises(SecretError, match="check value does not match"):
        KeyVault(other_raw, record=RAW_VAULT.record)


def test_the_ciphertext_is_versioned_names_its_key_and_hides_the_key():
    token = RAW_VAULT.encrypt(KEY, migration_id=7, party_id="0106:1")
    version, key_id, _ = token.split(":", 2)
    assert (version, key_id, key_id_of(token)) == ("v2", RAW_VAULT.key_id, RAW_VAULT.key_id)
    assert KEY not in token and "11AAbb" not in token
    assert RAW_VAULT.seals(token)
    assert token != RAW_VAULT.encrypt(KEY, migration_id=7, party_id="0106:1")  # a fresh nonce each time


@pytest.mark.parametrize(("migration_id", "party_id"), [(8, "0106:1"), (7, "0106:2"), (8, "0106:2")])
def test_a_ciphertext_moved_to_another_migration_does_not_open_and_the_error_names_that_row(migration_id, party_id):
    token = RAW_VAULT.encrypt(KEY, migration_id=7, party_id="0106:1")
    with pytest.raises(StoredKeyUnreadable, match="sealed for another migration") as caught:
        RAW_VAULT.decrypt(token, migration_id=migration_id, party_id=party_id)
    assert f"migration {migration_id} (party {party_id})" in str(caught.value)
    assert (caught.value.migration_id, caught.value.party_id) == (migration_id, party_id)
    assert caught.value.exit_code == 2


def test_an_altered_or_truncated_ciphertext_does_not_open():
    token = RAW_VAULT.encrypt(KEY, migration_id=7, party_id="p")
    head, body = token.rsplit(":", 1)
    flipped = body[:-3] + ("A" if body[-3] != "A" else "B") + body[-2:]
    for bad in (f"{head}:{flipped}", f"{head}:{body[:10]}", f"{head}:!!!"):
        with pytest.raises(StoredKeyUnreadable, match="migration 7 \\(party p\\)"):
            RAW_VAULT.decrypt(bad, migration_id=7, party_id="p")


def test_a_ciphertext_of_another_key_says_which_key_sealed_it():
    other = KeyVault(base64.b64encode(os.urandom(32)).decode())
    token = other.encrypt(KEY, migration_id=1, party_id="p")
    why = f"sealed with key id {other.key_id}, not with the key of {KEY_SETTING}"
    with pytest.raises(StoredKeyUnreadable, match=why):
        RAW_VAULT.decrypt(token, migration_id=1, party_id="p")
    assert not RAW_VAULT.seals(token)


def test_v1_fernet_ciphertexts_from_before_the_vault_still_open_with_the_same_setting():
    legacy_secret = "test-key-encryption-key-0123456789"
    derived = hashlib.sha256(b"peppol-migrate/kek/v1\0" + legacy_secret.encode()).digest()
    v1 = Fernet(base64.urlsafe_b64encode(derived)).encrypt(KEY.encode()).decode()
    vault = KeyVault(legacy_secret, scrypt=CHEAP)
    assert key_id_of(v1) is None and vault.opens_legacy(v1) and not vault.seals(v1)
    assert vault.decrypt(v1, migration_id=3, party_id="any") == KEY  # v1 is not bound to a row
    other = KeyVault("another long passphrase here", scrypt=CHEAP)
    assert not other.opens_legacy(v1)
    with pytest.raises(StoredKeyUnreadable, match="v1 \\(Fernet\\) ciphertext that PEPPOL_MIGRATE_KEYS"):
        other.decrypt(v1, migration_id=3, party_id="any")


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=40).filter(lambda k: not any(0xD800 <= ord(c) <= 0xDFFF for c in k)),
    migration_id=st.integers(min_value=1, max_value=2**62),
    party_id=st.text(min_size=1, max_size=60),
    other_id=st.integers(min_value=1, max_value=2**62),
    other_party=st.text(min_size=1, max_size=60),
)
def test_round_trip_and_binding_to_the_migration(key, migration_id, party_id, other_id, other_party):
    party = party_id.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    moved = other_party.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    token = RAW_VAULT.encrypt(key, migration_id=migration_id, party_id=party)
    assert RAW_VAULT.decrypt(token, migration_id=migration_id, party_id=party) == key
    if (other_id, moved) != (migration_id, party):
        with pytest.raises(StoredKeyUnreadable):
            RAW_VAULT.decrypt(token, migration_id=other_id, party_id=moved)
