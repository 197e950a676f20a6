"""Helpers shared by the test suites (factories, not fakes); fixtures live in the conftest.py files.

This package holds what tests import; no test module imports another test module or a conftest
(tests/unit/test_test_layout.py checks). Besides the names below:

- ``tests.support.steps``: a scripted PSB and a step context on it, for the engine's step tests;
- ``tests.support.cli``: running the installed ``peppol-migrate`` console script;
- ``tests.support.durability``: worker processes, transcripts and the secret search;
- ``tests.support.badrows``: a batch file with one bad row of each kind;
- ``tests.support.records``: parties and migrations written straight into a store.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

from migration_engine.machine import Direction, State, Trigger, next_state
from migration_engine.sandbox.client_env import client_env
from migration_engine.settings import Settings, load_settings

ROOT = Path(__file__).parents[2]
PROFILES = ROOT / "config" / "profiles"
PROVIDER = "provider-b"
# A 32-byte key in base64 (the documented form: used as is, no scrypt), so tests open vaults fast.
TEST_KEK = "dGVzdC1rZXktZW5jcnlwdGlvbi1rZXktMDEyMzQ1Njc="
TEST_AUDIT_KEY = "test-audit-key-0123456789abcdef"

HAPPY_PATH = {
    Direction.TO_ECONNECT: (
        Trigger.KEY_RECEIVED,
        Trigger.TAKEOVER_REQUESTED,
        Trigger.TAKEOVER_CONFIRMED,
        Trigger.CAPABILITIES_APPLIED,
        Trigger.PERMISSIONS_GRANTED,
        Trigger.VERIFIED,
    ),
    Direction.FROM_ECONNECT: (
        Trigger.KEY_PREPARED,
        Trigger.KEY_HANDED_OFF,
        Trigger.TAKEOVER_CONFIRMED,
        Trigger.VERIFIED,
    ),
}


def expected_moves(direction: Direction) -> list[tuple[str, str]]:
    """The (from, to) pairs of a migration's happy path, in order."""
    moves, state = [], State.REQUESTED
    for trigger in HAPPY_PATH[direction]:
        dest = next_state(direction, state, trigger)
        moves.append((state.value, dest.value))
        state = dest
    return moves


def engine_env(db_url: str, sandbox_url: str, **extra: str) -> dict[str, str]:
    env = client_env(
        sandbox_url,
        db_url=db_url,
        profiles_dir=PROFILES,
        encryption_key=TEST_KEK,
        audit_key=TEST_AUDIT_KEY,
        poll_interval_s=0.05,
        takeover_poll_s=5,
        takeover_poll_max_s=60,
    )
    return {**env, **extra}


def engine_settings(db_url: str, sandbox_url: str, **extra: str) -> Settings:
    return load_settings(env=engine_env(db_url, sandbox_url, **extra))


def kvk(i: int) -> str:
    return f"0106:{50000000 + i:08d}"


def seed_batch(
    model,
    path: Path,
    *,
    inbound: Iterable[str] = (),
    outbound: Iterable[str] = (),
    wrong_keys: Sequence[str] = (),
    no_key: Sequence[str] = (),
) -> dict[str, str]:
    """Register the parties in the sandbox and write a batch CSV; returns the inbound keys used."""
    keys: dict[str, str] = {}
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "migration_key", "profile", "name", "new_provider"])
        for party in inbound:
            model.register(party, PROVIDER)
            key = "" if party in no_key else model.provider_prepare(PROVIDER, party)
            if party in wrong_keys:
                key = "99ZZyy##99ZZyy##"
            if key:
                keys[party] = key
            writer.writerow([party, "to-econnect", key, "default", f"Name {party}", ""])
        for party in outbound:
            model.register(party, "econnect")
            writer.writerow([party, "from-econnect", "", "", f"Name {party}", PROVIDER])
    return keys
