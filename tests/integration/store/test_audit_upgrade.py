"""Revision 0003 on a database that 0002 wrote: every chain re-keyed under the audit key, one
``audit_rekeyed`` event each binding the row, earlier breaks kept visible; refused without a key."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from migration_engine.errors import ConfigError
from migration_engine.store import EventIn, Store
from migration_engine.store.records import Change
from migration_engine.store.versioning import SCHEMA_HEAD
from tests.support import TEST_AUDIT_KEY
from tests.support.audit import LegacyMigration, legacy_database, plain_hash

DONE = (
    ("requested", "key_issued", "key_prepared"),
    ("key_issued", "key_delivered", "key_handed_off"),
    ("key_delivered", "taken_over", "takeover_confirmed"),
    ("taken_over", "completed", "verified"),
)
LEGACY = [
    LegacyMigration("0106:00000001", "from-econnect", DONE),
    LegacyMigration("0106:00000002", "from-econnect", DONE[:1]),
    # tampered while still at 0002: cancelled on the row, completed in its chain
    LegacyMigration("0106:00000003", "from-econnect", DONE, row_state="cancelled"),
]


def _versions(run_sql: Callable[..., list[Any]]) -> set[str]:
    return {r[0] for r in run_sql("SELECT version_num FROM alembic_version")}


def test_upgrade_without_an_audit_key_refuses_and_changes_nothing(
    db_url: str, make_store: Callable[..., Store], run_sql: Callable[..., list[Any]]
) -> None:
    legacy_database(db_url, LEGACY)
    before = run_sql("SELECT id, prev_hash, hash FROM audit_events ORDER BY id")
    store = make_store(upgrade=False, audit_key=None)
    with pytest.raises(ConfigError, match=r"PEPPOL_MIGRATE_AUDIT__KEY.*nothing was changed"):
        store.upgrade()
    assert _versions(run_sql) == {"0002"}
    assert run_sql("SELECT id, prev_hash, hash FROM audit_events ORDER BY id") == before


def test_an_empty_database_upgrades_without_an_audit_key(make_store: Callable[..., Store]) -> None:
    store = make_store(upgrade=False, audit_key=None)
    store.upgrade()
    store.check_schema()
    with pytest.raises(ConfigError, match="PEPPOL_MIGRATE_AUDIT__KEY"):
        store.verify_audit()


def test_upgrade_rekeys_every_chain_and_binds_the_rows(
    db_url: str, make_store: Callable[..., Store], run_sql: Callable[..., list[Any]]
) -> None:
    ids = legacy_database(db_url, LEGACY)
    old = {
        mid: run_sql("SELECT hash, detail FROM audit_events WHERE migration_id = :m ORDER BY seq", m=mid)
        for mid in ids.values()
    }
    store = make_store()
    assert _versions(run_sql) == {SCHEMA_HEAD}

    broken = store.verify_audit()
    tampered = ids["0106:00000003"]
    assert [(b.migration_id, b.party_id) for b in broken] == [(tampered, "0106:00000003")]
    assert "already broken when revision 0003 re-keyed it" in broken[0].reason
    assert "state was cancelled but the chain's last event left it completed" in broken[0].reason

    for party, mid in ids.items():
        events = store.events(mid)
        record = store.get(mid)
        assert record is not None and record.party_id == party
        *kept, rekeyed = events
        assert len(kept) == len(old[mid]) and rekeyed.seq == len(kept) + 1
        assert (rekeyed.kind, rekeyed.actor, rekeyed.to_state) == (
            "audit_rekeyed",
            "peppol-migrate db upgrade",
            record.state,
        )
        assert rekeyed.detail["party_id"] == party and rekeyed.detail["batch"] == "legacy"
        assert rekeyed.detail["sha256_head"] == old[mid][-1][0]  # commits to the old chain
        assert [e.detail for e in kept] == [json.loads(d) for _, d in old[mid]]  # content untouched
        assert all(e.hash != h for e, (h, _) in zip(kept, old[mid], strict=True))  # every hash re-keyed
        # the old chain can still be recomputed from the content: it ends at sha256_head
        prev = ""
        for e in kept:
            prev = plain_hash(
                {
                    **e.__dict__,
                    "from_state": e.from_state and e.from_state.value,
                    "to_state": e.to_state and e.to_state.value,
                    "trigger": e.trigger and e.trigger.value,
                    "detail": json.dumps(dict(e.detail), sort_keys=True, separators=(",", ":")),
                    "prev_hash": prev,
                }
            )
        assert prev == rekeyed.detail["sha256_head"]

    # Re-keyed migrations go on: a new move verifies, and the rekeyed event binds the row now.
    mid = ids["0106:00000002"]
    record = store.get(mid)
    assert record is not None
    move = EventIn(
        kind="operator", actor="alice", from_state=record.state, to_state=record.state, detail={"action": "pause"}
    )
    assert store.apply(
        Change(
            migration_id=mid, expected_state=record.state, expected_version=record.version, paused=True, events=[move]
        )
    )
    assert [b.migration_id for b in store.verify_audit()] == [tampered]
    run_sql("UPDATE migrations SET party_id = '0106:00000099' WHERE id = :m", m=mid)
    swapped = {b.migration_id: b for b in store.verify_audit()}[mid]
    assert "party_id is 0106:00000099 but the chain was created for 0106:00000002" in swapped.reason


def test_upgrade_under_another_key_does_not_verify_under_the_configured_one(
    db_url: str, make_store: Callable[..., Store]
) -> None:
    legacy_database(db_url, LEGACY[:2])
    make_store(audit_key="another-audit-key-0123456789")
    store = make_store(upgrade=False, audit_key=TEST_AUDIT_KEY)
    broken = store.verify_audit()
    assert len(broken) == 2 and all(b.seq == 1 and "does not match its hash" in b.reason for b in broken)
