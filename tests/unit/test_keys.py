"""Migration key rules (peppol-commons CSMLDefaultTest vectors), masking and encryption."""

import pytest

from migration_engine.errors import SecretError
from migration_engine.keys import KeyVault, generate_key, is_valid_key, key_problem, mask


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


def test_vault_round_trip_and_wrong_key():
    vault = KeyVault("a-sufficiently-long-secret")
    token = vault.encrypt("11AAbb$$11AAbb$$")
    assert "11AAbb" not in token
    assert vault.decrypt(token) == "11AAbb$$11AAbb$$"
    with pytest.raises(SecretError, match="cannot be decrypted"):
        KeyVault("another-long-secret-value").decrypt(token)


@pytest.mark.parametrize("secret", [None, "", "short"])
def test_vault_needs_a_real_secret(secret):
    with pytest.raises(SecretError, match="ENCRYPTION_KEY"):
        KeyVault(secret)
