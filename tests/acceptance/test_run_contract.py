"""`peppol-migrate run` as a user runs it against the sandbox: it refuses to start without
working PSB credentials; `--until-settled` returns when nothing can progress without outside
help and says how by its exit code (0 all settled, 3 waiting on others, 4 needs attention);
Ctrl-C stops it gracefully with 130 and a stopped heartbeat.

The sandbox's other provider takes an hour to use a handed-off key here, so outbound parties
wait on it for as long as a test runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest

from migration_engine.sandbox import SandboxConfig
from tests.support import ROOT, engine_env, kvk, seed_batch
from tests.support.cli import BIN, as_json, peppol_migrate

FAST = {
    "PEPPOL_MIGRATE_TAKEOVER__POLL_S": "0.2",
    "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": "0.5",
    "PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S": "0.1",
}


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(takeover_delay_s=3600.0)


@pytest.fixture
def env(tmp_path, sandbox) -> dict[str, str]:
    env = engine_env(f"sqlite:///{tmp_path / 'run.db'}", sandbox.url, **FAST)
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    return env


def imported(tmp_path, sandbox, env, **parties: list[str]) -> None:
    seed_batch(sandbox.model, tmp_path / "b.csv", **parties)
    result = peppol_migrate("import", str(tmp_path / "b.csv"), "--batch", "b", env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


def test_run_refuses_to_start_without_a_client_secret(env) -> None:
    result = peppol_migrate("run", "--until-settled", env={**env, "PEPPOL_MIGRATE_PSB__CLIENT_SECRET": ""}, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert "PEPPOL_MIGRATE_PSB__CLIENT_SECRET" in result.stderr and "no PSB credentials" in result.stderr
    no_traceback(result)


def test_run_refuses_to_start_with_a_username_but_no_password(env) -> None:
    result = peppol_migrate("run", env={**env, "PEPPOL_MIGRATE_PSB__USERNAME": "sandbox-user"}, cwd=ROOT)
    assert result.returncode == 2 and "PEPPOL_MIGRATE_PSB__PASSWORD" in result.stderr, result.stderr
    no_traceback(result)


def test_run_refuses_to_start_with_a_rejected_secret(env) -> None:
    wrong = "not-the-sandbox-secret-4711"
    result = peppol_migrate("run", env={**env, "PEPPOL_MIGRATE_PSB__CLIENT_SECRET": wrong}, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    assert "rejected the credentials" in result.stderr and "PEPPOL_MIGRATE_PSB__CLIENT_SECRET" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert "worker started" not in result.stderr
    no_traceback(result)


def test_until_settled_exits_0_when_everything_completed(tmp_path, sandbox, env) -> None:
    imported(tmp_path, sandbox, env, inbound=[kvk(1), kvk(2)])
    run = peppol_migrate("run", "--until-settled", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "every migration is completed or cancelled" in run.stdout
    logs = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    started = next(e for e in logs if e.get("action") == "worker_started")
    assert "concurrency 8" in started["message"] and "run.db" in started["message"]
    assert any(e.get("action") == "worker_stopped" and "settled" in e["message"] for e in logs)
    assert as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))["completed"] == 2


def test_until_settled_exits_3_while_a_new_provider_has_not_taken_over(tmp_path, sandbox, env) -> None:
    """The outbound keys are handed off; the engine would only poll for a week: it returns."""
    imported(tmp_path, sandbox, env, inbound=[kvk(11)], outbound=[kvk(61), kvk(62)])
    run = peppol_migrate("run", "--until-settled", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "wait on others" in run.stdout
    assert any("from-econnect" in line and "key_delivered" in line and line.rstrip().endswith("waits on others")
               for line in run.stdout.splitlines()), run.stdout
    assert "next poll due at" in run.stdout
    status = as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))
    assert status["by_direction"]["to-econnect"]["completed"] == 1  # the engine's own polls were waited for
    assert status["by_direction"]["from-econnect"]["key_delivered"] == 2


def test_until_settled_exits_4_when_a_key_was_rejected(tmp_path, sandbox, env) -> None:
    """A refused inbound key needs a person to get a new one: that outweighs waiting on others."""
    imported(tmp_path, sandbox, env, inbound=[kvk(21), kvk(22)], outbound=[kvk(71)], wrong_keys=[kvk(21)])
    run = peppol_migrate("run", "--until-settled", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 4, run.stdout + run.stderr
    assert "some migrations need attention" in run.stdout
    assert any("key_rejected" in line and "needs a person" in line for line in run.stdout.splitlines()), run.stdout
    logs = [json.loads(line) for line in run.stderr.splitlines() if line.startswith("{")]
    rejected = [e for e in logs if e.get("action") == "transition" and e["message"].endswith("-> key_rejected")]
    assert rejected and all(e["level"] == "warning" for e in rejected), rejected


def test_until_idle_still_exits_0_with_parties_waiting(tmp_path, sandbox, env) -> None:
    imported(tmp_path, sandbox, env, inbound=[kvk(31), kvk(32)], wrong_keys=[kvk(31)])
    run = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "key_rejected" in run.stdout


@pytest.mark.parametrize(
    ("signum", "code", "why"),
    [(signal.SIGINT, 130, "interrupted (SIGINT)"), (signal.SIGTERM, 0, "asked to stop (SIGTERM)")],
)
def test_a_signal_stops_it_gracefully(tmp_path, sandbox, env, signum, code, why) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (a service manager) to a serving `run`: it logs its stop, exits
    130 or 0 (a clean stop for systemd), and `status` shows it stopped."""
    imported(tmp_path, sandbox, env, outbound=[kvk(81)])
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")} | env
    proc = subprocess.Popen(
        [str(BIN), "run"], env=full_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # ends when the process does, so this cannot hang past it
            seen.append(line)
            if '"worker_started"' in line:
                break
        assert any('"worker_started"' in line for line in seen), seen
        proc.send_signal(signum)
        _, rest = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, "".join(seen) + rest
    assert '"worker_stopped"' in rest and why in rest
    assert "Traceback" not in rest
    workers = as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))["workers"]
    assert len(workers) == 1 and workers[0]["stopped_at"] is not None and not workers[0]["alive"]
