"""Keys at rest as a user meets them: a wrong key-encryption key refused up front by every
command that encrypts or decrypts, a ciphertext moved to another row failing that row only,
and `keys rotate` over 10,000 keys killed midway and resumed."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from migration_engine.clock import SystemClock
from migration_engine.errors import SecretError
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration, Store
from tests.support import ROOT, TEST_AUDIT_KEY, TEST_KEK, engine_env, kvk, seed_batch
from tests.support.cli import BIN, as_json, peppol_migrate
from tests.support.records import sealed

SETTING = "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY"
WRONG_KEK = "d3Jvbmcta2V5LWVuY3J5cHRpb24ta2V5LTAxMjM0NTY="  # a well-formed 32-byte key, not the one
NEW_KEK = "bmV3LWtleS1lbmNyeXB0aW9uLWtleS0wMTIzNDU2Nzg="


@pytest.fixture
def env(tmp_path, sandbox):
    return engine_env(
        f"sqlite:///{tmp_path / 'keys.db'}",
        sandbox.url,
        PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
        PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
        PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.1",
    )


def dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def test_a_wrong_key_is_refused_up_front_by_import_key_set_run_and_export(tmp_path, sandbox, env):
    inbound = [kvk(900 + i) for i in range(3)]
    seed_batch(sandbox.model, tmp_path / "a.csv", inbound=inbound, no_key=[inbound[2]])
    seed_batch(sandbox.model, tmp_path / "b.csv", inbound=[kvk(950)])
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    assert peppol_migrate("import", str(tmp_path / "a.csv"), env=env, cwd=ROOT).returncode == 0
    before = dump(tmp_path / "keys.db")

    wrong = {**env, SETTING: WRONG_KEK}
    weak = {**env, SETTING: "aaaaaaaaaaaaaaaa"}
    results = {
        "import": peppol_migrate("import", str(tmp_path / "b.csv"), env=wrong, cwd=ROOT),
        "key set": peppol_migrate("key", "set", inbound[2], "22BBcc##22BBcc##", env=wrong, cwd=ROOT),
        "run": peppol_migrate("run", "--until-idle", env=wrong, cwd=ROOT),
        "keys export": peppol_migrate(
            "keys", "export", "--batch", "a", "--out", str(tmp_path / "k.csv"), env=wrong, cwd=ROOT
        ),
        "weak import": peppol_migrate("import", str(tmp_path / "b.csv"), env=weak, cwd=ROOT),
    }
    for what, result in results.items():
        assert result.returncode == 2, (what, result.stderr)
        assert SETTING in result.stderr, (what, result.stderr)
        assert "Traceback" not in result.stderr and WRONG_KEK not in result.stderr + result.stdout
    assert "is not the key-encryption key" in results["run"].stderr
    assert "only 1 distinct characters" in results["weak import"].stderr
    assert dump(tmp_path / "keys.db") == before  # nothing written: no batch, no key, no worker row
    assert not (tmp_path / "k.csv").exists()
    # The right key still works afterwards.
    assert peppol_migrate("import", str(tmp_path / "b.csv"), env=env, cwd=ROOT).returncode == 0


def test_a_ciphertext_moved_to_another_row_fails_that_migration_only(tmp_path, sandbox, env):
    inbound = [kvk(960 + i) for i in range(3)]
    seed_batch(sandbox.model, tmp_path / "m.csv", inbound=inbound)
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    assert peppol_migrate("import", str(tmp_path / "m.csv"), "--batch", "m", env=env, cwd=ROOT).returncode == 0
    with sqlite3.connect(tmp_path / "keys.db") as db:
        (source,) = db.execute("SELECT key_ciphertext FROM migrations WHERE party_id = ?", (inbound[0],)).fetchone()
        db.execute("UPDATE migrations SET key_ciphertext = ? WHERE party_id = ?", (source, inbound[1]))
    run = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr  # the worker starts: one bad row is not a wrong key
    states = {p: as_json(peppol_migrate("show", p, "--json", env=env, cwd=ROOT)) for p in inbound}
    assert states[inbound[0]]["state"] == states[inbound[2]]["state"] == "completed"
    moved = states[inbound[1]]["migrations"][0]
    assert moved["state"] == "needs_attention"
    assert f"(party {inbound[1]})" in moved["last_error"] and "sealed for another migration" in moved["last_error"]
    assert f"migration {moved['id']} " in moved["last_error"]


N_KEYS = 10_000


def _seed_keys(db_url: str) -> None:
    """10,000 outbound migrations holding a key, written through the store (one import)."""
    store = Store(db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
    try:
        store.upgrade()
        vault = store.open_vault(TEST_KEK)
        keys = {f"0106:{60000000 + i}": f"{i % 90 + 10:02d}AAbb$$K{i:05d}" for i in range(N_KEYS)}
        items = (
            NewMigration(party_id=p, direction=Direction.FROM_ECONNECT, state=State.KEY_ISSUED, new_provider="b")
            for p in keys
        )
        store.add_migrations(batch_name="big", items=items, actor="seed", seal=sealed(vault, keys))
    finally:
        store.close()


def _resealed(path: Path) -> int:
    """Keys the rotation's new key sealed so far (0 before its ``next`` row exists)."""
    with sqlite3.connect(path, timeout=10) as db:
        row = db.execute("SELECT key_id FROM key_vault WHERE status = 'next'").fetchone()
        if row is None:
            return 0
        (n,) = db.execute("SELECT COUNT(*) FROM migrations WHERE key_ciphertext LIKE ?", (f"v2:{row[0]}:%",)).fetchone()
    return int(n)


def test_keys_rotate_over_10000_keys_killed_midway_resumes_and_retires_the_old_key(tmp_path, sandbox, env):
    path = tmp_path / "keys.db"
    db_url = f"sqlite:///{path}"
    _seed_keys(db_url)
    rotate_env = {**env, "PEPPOL_MIGRATE_KEYS__NEW_ENCRYPTION_KEY": NEW_KEK}
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
    proc = subprocess.Popen(
        [str(BIN), "keys", "rotate", "--batch-size", "200", "--actor", "ops"],
        env={**full_env, **rotate_env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    try:
        while _resealed(path) < 200:  # the first batch is committed: kill it mid-rotation
            assert proc.poll() is None, "the rotation ended before it could be killed"
            assert time.monotonic() < deadline, "no batch committed within 60 s"
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    at_kill = _resealed(path)
    assert 200 <= at_kill < N_KEYS

    # Interrupted: the old key is still the one every command checks.
    assert (
        peppol_migrate(
            "keys",
            "export",
            "--batch",
            "nope",
            "--out",
            str(tmp_path / "x.csv"),
            env={**env, SETTING: NEW_KEK},
            cwd=ROOT,
        ).returncode
        == 2
    )

    resumed = peppol_migrate(
        "keys", "rotate", "--batch-size", "1000", "--actor", "ops", "--json", env=rotate_env, cwd=ROOT, timeout=120
    )
    result = as_json(resumed)
    assert result["already"] == at_kill and result["resealed"] == N_KEYS - at_kill and result["unreadable"] == []

    store = Store(db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
    try:
        with pytest.raises(SecretError, match="check value does not match"):
            store.open_vault(TEST_KEK)
        new = store.open_vault(NEW_KEK)
        assert new.key_id == result["new_key_id"]
        records = list(store.list_migrations(batch_name="big"))
        assert len(records) == N_KEYS
        opened = {
            r.party_id: new.decrypt(r.key_ciphertext or "", migration_id=r.id, party_id=r.party_id) for r in records
        }
        assert opened == {f"0106:{60000000 + i}": f"{i % 90 + 10:02d}AAbb$$K{i:05d}" for i in range(N_KEYS)}
    finally:
        store.close()
    with sqlite3.connect(path) as db:
        per_row = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT migration_id) FROM audit_events WHERE kind = 'operator' AND actor = 'ops'"
        ).fetchone()
        vault_rows = dict(db.execute("SELECT status, COUNT(*) FROM key_vault GROUP BY status").fetchall())
    assert per_row == (N_KEYS, N_KEYS)  # each key resealed and audited exactly once, across the kill
    assert vault_rows == {"current": 1, "retired": 1}
    old = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT)
    assert old.returncode == 2 and SETTING in old.stderr
