"""Tamper tests: change the database behind the engine's back and `peppol-migrate audit verify`
fails and names the migration, the party and the event. Without the audit key nobody can write
a chain that verifies; the rows are checked against their chains; an anchor (`audit anchor`)
shows what was deleted, cut short or rewritten since. Plus the worker's refusal of a wrong or
missing key-encryption key, and the commands' refusal without an audit key, as a user meets
them on the command line."""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from migration_engine.backoffice.importer import import_file
from migration_engine.clock import ManualClock
from migration_engine.engine.runtime import Runtime
from migration_engine.sandbox import SandboxConfig, SandboxServer
from tests.support import ROOT, engine_env, engine_settings, kvk, seed_batch
from tests.support.audit import plain_hash
from tests.support.cli import as_json, peppol_migrate

N_PARTIES = 10


@pytest.fixture
def migrated(tmp_path):
    """Ten parties migrated to the end (in-process, on a manual clock), then the CLI's env."""
    clock = ManualClock()
    parties = [kvk(700 + i) for i in range(N_PARTIES)]
    with SandboxServer(SandboxConfig(), clock=clock) as sandbox:
        keys = seed_batch(sandbox.model, tmp_path / "b.csv", inbound=parties[:6], outbound=parties[6:])
        db_url = f"sqlite:///{tmp_path / 'tamper.db'}"
        rt = Runtime(engine_settings(db_url, sandbox.url), clock=clock)
        rt.store.upgrade()
        import_file(rt, path=tmp_path / "b.csv", batch_name="b", dry_run=False, actor="test")
        rt.worker().run(until_idle=True)
        ids = {p: rt.store.find_party(p)[0].id for p in parties}
        rt.close()
        yield tmp_path / "tamper.db", ids, engine_env(db_url, sandbox.url), keys


def _rows(db: sqlite3.Connection, mid: int) -> list[dict]:
    db.row_factory = sqlite3.Row
    rows = [dict(r) for r in db.execute("SELECT * FROM audit_events WHERE migration_id = ? ORDER BY seq", (mid,))]
    for row in rows:
        row["at"] = datetime.fromisoformat(row["at"]).replace(tzinfo=UTC)
    return rows


def _rehash_plainly(db: sqlite3.Connection, rows: list[dict]) -> None:
    """What an attacker without the audit key can do: recompute the chain with plain SHA-256."""
    prev = rows[0]["prev_hash"]
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = prev = plain_hash(row)
        db.execute(
            "UPDATE audit_events SET detail = ?, prev_hash = ?, hash = ? WHERE id = ?",
            (row["detail"], row["prev_hash"], row["hash"], row["id"]),
        )


def _verify(env, *args):
    return peppol_migrate("audit", "verify", *args, env=env, cwd=ROOT)


def _broken_lines(result, party_of):
    """The BROKEN lines by migration id; each names the migration's party."""
    out = {}
    for line in result.stdout.splitlines():
        assert line.startswith("BROKEN migration "), line
        mid = int(line.split()[2])
        assert f"({party_of[mid]})" in line, line
        assert mid not in out, f"migration {mid} reported twice"
        out[mid] = line
    return out


def test_a_changed_or_deleted_audit_row_is_named_by_audit_verify(migrated):
    path, ids, env, _ = migrated
    intact = _verify(env)
    assert intact.returncode == 0 and "intact" in intact.stdout
    changed, rehashed, deleted, last = list(ids.values())[:4]
    db = sqlite3.connect(path)
    with db:
        # 1. someone edits what a worker recorded
        db.execute(
            'UPDATE audit_events SET detail = \'{"note":"nothing happened"}\' WHERE migration_id = ? AND seq = 3',
            (changed,),
        )
        # 2. ... and recomputes that row's hash to cover it up, without the audit key
        row = _rows(db, rehashed)[1]
        row["detail"] = '{"status":200}'
        forged = (row["detail"], plain_hash(row), row["id"])
        db.execute("UPDATE audit_events SET detail = ?, hash = ? WHERE id = ?", forged)
        # 3. a row in the middle of a chain disappears; 4. so does the last row of another
        db.execute("DELETE FROM audit_events WHERE migration_id = ? AND seq = 4", (deleted,))
        (top,) = db.execute("SELECT max(seq) FROM audit_events WHERE migration_id = ?", (last,)).fetchone()
        db.execute("DELETE FROM audit_events WHERE migration_id = ? AND seq = ?", (last, top))
    db.close()

    result = _verify(env)
    assert result.returncode == 1
    party = {mid: p for p, mid in ids.items()}
    lines = _broken_lines(result, party)
    assert set(lines) == {changed, rehashed, deleted, last}
    for mid, seq, why in ((changed, 3, "changed"), (rehashed, 2, "does not match its hash"), (deleted, 4, "missing")):
        assert lines[mid].startswith(f"BROKEN migration {mid} ({party[mid]}) at event {seq}:") and why in lines[mid]
    assert f"at event {top}:" in lines[last]

    report = json.loads(_verify(env, "--json").stdout)
    assert not report["ok"]
    assert sorted((b["migration_id"], b["seq"]) for b in report["broken"]) == sorted(
        [(changed, 3), (rehashed, 2), (deleted, 4), (last, top)]
    )


def test_the_six_tamperings_of_the_rows_are_named(migrated, tmp_path):
    """State rewritten, parties swapped, a chain rewritten without the key, a chain cut short with
    event_seq fixed, a migration deleted whole, a migration forged: each is named, exit 1."""
    path, ids, env, _ = migrated
    anchor = tmp_path / "anchor.json"
    taken = peppol_migrate("audit", "anchor", "--output", str(anchor), env=env, cwd=ROOT)
    assert taken.returncode == 0, taken.stderr
    assert f"anchored {N_PARTIES} migrations" in taken.stdout
    assert os.stat(anchor).st_mode & 0o777 == 0o600

    party = {mid: p for p, mid in ids.items()}
    cancelled, swap_a, swap_b, rewritten, cut, gone = list(ids.values())[:6]
    db = sqlite3.connect(path)
    with db:
        # 1. a completed migration is marked cancelled
        db.execute("UPDATE migrations SET state = 'cancelled' WHERE id = ?", (cancelled,))
        # 2. two rows' parties are swapped
        db.execute("UPDATE migrations SET party_id = ? WHERE id = ?", (party[swap_b], swap_a))
        db.execute("UPDATE migrations SET party_id = ? WHERE id = ?", (party[swap_a], swap_b))
        # 3. an event is edited and the whole chain recomputed, without the audit key
        rows = _rows(db, rewritten)
        rows[2]["detail"] = '{"note":"nothing happened"}'
        _rehash_plainly(db, rows)
        # 4. the last two events are deleted and the row made to agree (event_seq and state)
        rows = _rows(db, cut)
        keep = rows[:-2]
        state = next(r["to_state"] for r in reversed(keep) if r["to_state"] is not None)
        db.execute("DELETE FROM audit_events WHERE migration_id = ? AND seq > ?", (cut, len(keep)))
        db.execute("UPDATE migrations SET event_seq = ?, state = ? WHERE id = ?", (len(keep), state, cut))
        # 5. a whole migration disappears, events and row
        db.execute("DELETE FROM audit_events WHERE migration_id = ?", (gone,))
        db.execute("DELETE FROM migrations WHERE id = ?", (gone,))
        # 6. a migration is forged, with a created event hashed as well as one can without the key
        db.execute(
            "INSERT INTO migrations (id, batch_id, party_id, direction, state, version, attempts, paused, "
            "created_at, updated_at, completed_at, event_seq) SELECT 999, batch_id, '0106:66666666', direction, "
            "'completed', 1, 0, 0, created_at, updated_at, completed_at, 1 FROM migrations WHERE id = ?",
            (cancelled,),
        )
        forged = _rows(db, cancelled)[0]
        forged.update(
            id=None,
            migration_id=999,
            to_state="completed",
            detail=json.dumps(
                {**json.loads(forged["detail"]), "party_id": "0106:66666666"}, sort_keys=True, separators=(",", ":")
            ),
        )
        forged["hash"] = plain_hash(forged)
        db.execute(
            "INSERT INTO audit_events (migration_id, seq, at, actor, kind, to_state, detail, prev_hash, hash) "
            "VALUES (999, 1, ?, ?, 'created', 'completed', ?, '', ?)",
            (forged["at"].strftime("%Y-%m-%d %H:%M:%S.%f"), forged["actor"], forged["detail"], forged["hash"]),
        )
    db.close()
    party_now = {**party, swap_a: party[swap_b], swap_b: party[swap_a], 999: "0106:66666666"}

    plain = _verify(env)
    assert plain.returncode == 1
    lines = _broken_lines(plain, party_now)
    assert "state is cancelled but" in lines[cancelled] and "leaves it completed" in lines[cancelled]
    assert f"party_id is {party[swap_b]} but the chain was created for {party[swap_a]}" in lines[swap_a]
    assert f"party_id is {party[swap_a]} but the chain was created for {party[swap_b]}" in lines[swap_b]
    assert "at event 1:" in lines[rewritten] and "does not match its hash" in lines[rewritten]
    assert "at event 1:" in lines[999] and "does not match its hash" in lines[999]
    assert set(lines) == {cancelled, swap_a, swap_b, rewritten, 999}  # the cut and the deletion need the anchor

    anchored = _verify(env, "--anchor", str(anchor))
    assert anchored.returncode == 1
    lines = _broken_lines(anchored, party_now)
    assert set(lines) == {cancelled, swap_a, swap_b, rewritten, 999, cut, gone}
    assert f"at event {len(keep) + 1}:" in lines[cut] and "truncated" in lines[cut]
    assert "deleted since the anchor" in lines[gone]


def test_an_anchor_must_be_intact_and_of_this_key(migrated, tmp_path):
    _, _, env, _ = migrated
    out = peppol_migrate("audit", "anchor", env=env, cwd=ROOT)  # to standard output
    data = json.loads(out.stdout)
    assert data["format"] == "peppol-migrate audit anchor" and len(data["migrations"]) == N_PARTIES
    assert env["PEPPOL_MIGRATE_AUDIT__KEY"] not in out.stdout
    data["migrations"][0]["seq"] -= 1  # someone shortens the anchor to hide a truncation
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(data))
    result = _verify(env, "--anchor", str(edited))
    assert result.returncode == 2 and "the anchor was changed after it was written" in result.stderr
    other = _verify({**env, "PEPPOL_MIGRATE_AUDIT__KEY": "another-audit-key-0123456789"}, "--anchor", str(edited))
    assert other.returncode == 2 and "another audit key" in other.stderr
    missing = _verify(env, "--anchor", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "none.json" in missing.stderr
    existing = peppol_migrate("audit", "anchor", "--output", str(edited), env=env, cwd=ROOT)
    assert existing.returncode == 2 and "never overwritten" in existing.stderr


def test_without_an_audit_key_writing_and_verifying_refuse(migrated, tmp_path):
    _, _, env, _ = migrated
    no_key = {**env, "PEPPOL_MIGRATE_AUDIT__KEY": ""}
    batch = tmp_path / "more.csv"
    batch.write_text(
        "party_id,direction,migration_key,profile,name,new_provider\n0106:77777777,from-econnect,,,More,provider-b\n"
    )
    for args in (("audit", "verify"), ("audit", "anchor"), ("run", "--until-idle"), ("import", str(batch))):
        result = peppol_migrate(*args, env=no_key, cwd=ROOT)
        assert result.returncode == 2, (args, result.stderr)
        assert "PEPPOL_MIGRATE_AUDIT__KEY" in result.stderr and "Traceback" not in result.stderr
    wrong = _verify({**env, "PEPPOL_MIGRATE_AUDIT__KEY": "another-audit-key-0123456789"})
    assert wrong.returncode == 1 and "is PEPPOL_MIGRATE_AUDIT__KEY the key" in wrong.stderr
    short = _verify({**env, "PEPPOL_MIGRATE_AUDIT__KEY": "tiny-k3y"})
    assert short.returncode == 2 and "audit.key" in short.stderr and "tiny-k3y" not in short.stderr
    status = as_json(peppol_migrate("status", "--json", env=no_key, cwd=ROOT))  # reading needs no key
    assert status["by_direction"]["to-econnect"]["completed"] == 6
    assert "0106:77777777" not in peppol_migrate("audit", "export", env=no_key, cwd=ROOT).stdout  # nothing imported


def test_audit_export_gives_every_event_with_its_party_and_no_key(migrated, tmp_path):
    _, ids, env, keys = migrated
    out = tmp_path / "audit.jsonl"
    result = peppol_migrate("audit", "export", "--output", str(out), env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert os.stat(out).st_mode & 0o777 == 0o600
    text = out.read_text(encoding="utf-8")
    events = [json.loads(line) for line in text.splitlines()]
    assert f"exported {len(events)} audit events" in result.stdout
    assert {e["party_id"] for e in events} == set(ids)
    assert all(e["batch"] == "b" and e["direction"] in ("to-econnect", "from-econnect") for e in events)
    created = [e for e in events if e["kind"] == "created"]
    assert len(created) == N_PARTIES and all(e["detail"]["party_id"] == e["party_id"] for e in created)
    for secret in [*keys.values(), env["PEPPOL_MIGRATE_AUDIT__KEY"], env["PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY"]]:
        assert secret not in text
    to_stdout = peppol_migrate("audit", "export", "--batch", "b", env=env, cwd=ROOT)
    assert to_stdout.stdout == text
    unknown = peppol_migrate("audit", "export", "--batch", "nope", env=env, cwd=ROOT)
    assert unknown.returncode == 2 and "no batch named 'nope'" in unknown.stderr
    assert Path(out).exists()


def test_run_refuses_a_wrong_or_missing_key_encryption_key(migrated):
    _, _, env, _ = migrated
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
