"""The CLI as a user drives it, against the sandbox over loopback: db upgrade, import, run,
status, show, key set, bad input and exit codes."""

from __future__ import annotations

import json

import pytest

from tests.support import ROOT, engine_env, kvk, seed_batch
from tests.support.cli import as_json, peppol_migrate


@pytest.fixture
def env(tmp_path, sandbox):
    return engine_env(
        f"sqlite:///{tmp_path / 'cli.db'}",
        sandbox.url,
        PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
        PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
        PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.1",
    )


def test_a_batch_from_import_to_completed(tmp_path, sandbox, env):
    inbound, outbound = [kvk(i) for i in range(6)], [kvk(50 + i) for i in range(6)]
    keys = seed_batch(
        sandbox.model,
        tmp_path / "b.csv",
        inbound=inbound,
        outbound=outbound,
        wrong_keys=[inbound[0]],
        no_key=[inbound[1]],
    )

    refused = peppol_migrate("status", env=env, cwd=ROOT)
    assert refused.returncode == 2 and "db upgrade" in refused.stderr

    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    plan = as_json(peppol_migrate("import", str(tmp_path / "b.csv"), "--dry-run", "--json", env=env, cwd=ROOT))
    assert plan["rows"] == 12 and plan["dry_run"]
    assert as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))["total"] == 0

    imported = peppol_migrate("import", str(tmp_path / "b.csv"), "--batch", "spring", env=env, cwd=ROOT)
    assert imported.returncode == 0 and "imported 12 parties into batch spring" in imported.stdout

    again = peppol_migrate("import", str(tmp_path / "b.csv"), env=env, cwd=ROOT)
    assert again.returncode == 2 and "open migration" in again.stderr

    run = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr

    status = as_json(peppol_migrate("status", "--batch", "spring", "--json", env=env, cwd=ROOT))
    assert status["by_direction"]["from-econnect"]["completed"] == 6
    assert status["by_direction"]["to-econnect"]["completed"] == 4
    assert status["by_direction"]["to-econnect"]["key_rejected"] == 1
    assert status["by_direction"]["to-econnect"]["requested"] == 1

    # The party without a key gets one from its current provider, then completes.
    new_key = sandbox.model.provider_prepare("provider-b", inbound[1])
    weak = peppol_migrate("key", "set", inbound[1], "weak-key", env=env, cwd=ROOT)
    assert weak.returncode == 2 and "upper-case" in weak.stderr
    ok = peppol_migrate("key", "set", inbound[1], "-", input=new_key + "\n", env=env, cwd=ROOT)
    assert ok.returncode == 0 and "now key_issued" in ok.stdout
    assert peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=120).returncode == 0

    shown = as_json(peppol_migrate("show", inbound[1], "--json", env=env, cwd=ROOT))
    assert shown["state"] == "completed"
    events = shown["migrations"][0]["events"]
    moves = [(e["from_state"], e["to_state"]) for e in events if e["kind"] in ("transition", "operator")]
    assert moves[0] == ("requested", "key_issued") and moves[-1] == ("permissions_set", "completed")
    assert any(e["kind"] == "api_call" and e["http_method"] == "PUT" for e in events)

    rejected = as_json(peppol_migrate("show", inbound[0], "--json", env=env, cwd=ROOT))
    assert rejected["state"] == "key_rejected"
    assert "Migration failed" in rejected["migrations"][0]["last_error"]

    verify = peppol_migrate("audit", "verify", env=env, cwd=ROOT)
    assert verify.returncode == 0 and "intact" in verify.stdout

    everything = json.dumps([status, shown, rejected]) + run.stdout + run.stderr + ok.stdout + ok.stderr
    for key in [*keys.values(), new_key, *sandbox.model.issued_keys()]:
        assert key not in everything


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["show", "not-a-party"], 2, "ICD:value"),
        (["import", "/nonexistent.csv"], 2, "no such file"),
        (["frobnicate"], 2, "invalid choice"),
        (["key", "set", "0106:12345678", "11AAbb$$11AAbb$$"], 2, "no open migration"),
    ],
)
def test_bad_input_exits_2_and_says_what(tmp_path, env, args, code, message):
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    result = peppol_migrate(*args, env=env, cwd=ROOT)
    assert result.returncode == code
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_a_secret_in_a_config_file_is_refused(tmp_path, env):
    config = tmp_path / "c.toml"
    config.write_text('[psb]\nclient_secret = "hunter2-hunter2"\n')
    result = peppol_migrate("--config", str(config), "status", env=env, cwd=ROOT)
    assert result.returncode == 2 and "secret" in result.stderr and "hunter2" not in result.stderr
