"""`peppol-migrate demo` as a user runs it: everything valid completes; no key leaks."""

from __future__ import annotations

import json
import sqlite3

from tests.support import ROOT
from tests.support.cli import as_json, peppol_migrate


def test_demo_completes_and_never_shows_a_key(tmp_path):
    result = peppol_migrate("demo", "--parties", "60", "--keep", "--json", cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] and summary["audit_intact"]
    status = summary["status"]
    assert status["total"] == 60
    rejected = summary["key_rejected"]
    assert rejected and all("new key" in r["error"] for r in rejected)
    assert status["completed"] == 60 - len(rejected)

    from pathlib import Path

    folder = Path(summary["folder"])
    keys = json.loads((folder / "sandbox-issued-keys.json").read_text())
    assert len(keys) >= 60 - len(rejected)
    db = folder / "demo.db"
    dump = "\n".join(sqlite3.connect(db).iterdump())
    env = {"PEPPOL_MIGRATE_DATABASE__URL": f"sqlite:///{db}"}
    shown = [peppol_migrate("show", r["party_id"], "--json", env=env, cwd=ROOT) for r in rejected[:3]]
    party = as_json(shown[0])
    assert party["state"] == "key_rejected"
    assert [e["seq"] for e in party["migrations"][0]["events"]] == sorted(
        e["seq"] for e in party["migrations"][0]["events"]
    )
    status_out = peppol_migrate("status", "--json", env=env, cwd=ROOT)
    outputs = [result.stdout, result.stderr, dump, status_out.stdout, status_out.stderr]
    outputs += [s.stdout + s.stderr for s in shown]
    for key in keys:
        for text in outputs:
            assert key not in text, "a migration key appeared unmasked"
