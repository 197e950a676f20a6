"""Tamper test: change or delete one audit row and `peppol-migrate audit verify` fails and names
the migration, the party and the event; plus the worker's refusal of a wrong or missing
key-encryption key, as a user meets it on the command line."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime

import pytest

from migration_engine.backoffice.importer import import_file
from migration_engine.clock import ManualClock
from migration_engine.engine.runtime import Runtime
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.store.audit import event_hash
from tests.support import ROOT, engine_env, engine_settings, kvk, seed_batch
from tests.support.cli import as_json, peppol_migrate


@pytest.fixture
def migrated(tmp_path):
    """Four parties migrated to the end (in-process, on a manual clock), then the CLI's env."""
    clock = ManualClock()
    parties = [kvk(700 + i) for i in range(4)]
    with SandboxServer(SandboxConfig(), clock=clock) as sandbox:
        seed_batch(sandbox.model, tmp_path / "b.csv", inbound=parties[:3], outbound=parties[3:])
        db_url = f"sqlite:///{tmp_path / 'tamper.db'}"
        rt = Runtime(engine_settings(db_url, sandbox.url), clock=clock)
        rt.store.upgrade()
        import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
        rt.worker().run(until_idle=True)
        ids = {p: rt.store.find_party(p)[0].id for p in parties}
        rt.close()
        yield tmp_path / "tamper.db", ids, engine_env(db_url, sandbox.url)


def test_a_changed_or_deleted_audit_row_is_named_by_audit_verify(migrated):
    path, ids, env = migrated
    intact = peppol_migrate("audit", "verify", env=env, cwd=ROOT)
    assert intact.returncode == 0 and "intact" in intact.stdout
    changed, rehashed, deleted, last = ids.values()
    db = sqlite3.connect(path)
    with db:
        # 1. someone edits what a worker recorded
        db.execute(
            'UPDATE audit_events SET detail = \'{"note":"nothing happened"}\' WHERE migration_id = ? AND seq = 3',
            (changed,),
        )
        # 2. ... and recomputes that row's hash to cover it up: the next link gives it away
        db.row_factory = sqlite3.Row
        row = dict(db.execute("SELECT * FROM audit_events WHERE migration_id = ? AND seq = 2", (rehashed,)).fetchone())
        row["detail"] = '{"status":200}'
        row["at"] = datetime.fromisoformat(row["at"]).replace(tzinfo=UTC)
        db.execute(
            "UPDATE audit_events SET detail = ?, hash = ? WHERE id = ?", (row["detail"], event_hash(row), row["id"])
        )
        # 3. a row in the middle of a chain disappears; 4. so does the last row of another
        db.execute("DELETE FROM audit_events WHERE migration_id = ? AND seq = 4", (deleted,))
        (top,) = db.execute("SELECT max(seq) FROM audit_events WHERE migration_id = ?", (last,)).fetchone()
        db.execute("DELETE FROM audit_events WHERE migration_id = ? AND seq = ?", (last, top))
    db.close()

    result = peppol_migrate("audit", "verify", env=env, cwd=ROOT)
    assert result.returncode == 1
    party = {mid: p for p, mid in ids.items()}
    lines = result.stdout.splitlines()
    for mid, seq, why in ((changed, 3, "changed"), (rehashed, 3, "earlier event changed"), (deleted, 4, "missing")):
        assert any(
            line.startswith(f"BROKEN migration {mid} ({party[mid]}) at event {seq}:") and why in line for line in lines
        )
    assert any(f"BROKEN migration {last} ({party[last]}) at event {top}:" in line for line in lines)
    assert len(lines) == 4

    report = json.loads(peppol_migrate("audit", "verify", "--json", env=env, cwd=ROOT).stdout)
    assert not report["ok"]
    assert sorted((b["migration_id"], b["seq"]) for b in report["broken"]) == sorted(
        [(changed, 3), (rehashed, 3), (deleted, 4), (last, top)]
    )


def test_run_refuses_a_wrong_or_missing_key_encryption_key(migrated):
    _, _, env = migrated
    wrong = peppol_migrate(
        "run", "--until-idle", env={**env, "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY": "not-the-kek-that-was-used"}, cwd=ROOT
    )
    assert wrong.returncode == 2 and "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY is not the key" in wrong.stderr
    missing = peppol_migrate("run", "--until-idle", env={**env, "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY": ""}, cwd=ROOT)
    assert missing.returncode == 2 and "no key-encryption key" in missing.stderr
    for result in (wrong, missing):
        assert "Traceback" not in result.stderr and "not-the-kek-that-was-used" not in result.stderr
    # Refused before it started: no worker heartbeat (the migration itself ran on a manual clock
    # long ago, so `status` lists no worker at all).
    assert as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))["workers"] == []
