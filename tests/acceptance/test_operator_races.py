"""Operator actions racing a step, as a service desk runs them: a worker process (`run
--until-idle`) against a slow sandbox PSB, and `cancel`, `pause` or `key set` while the
migration PUT (inbound) or prepareToMigrate (outbound) is in flight at the PSB.

The action is requested ("requested; applies when the step in flight ends") and made after the
step's outcome: the final state is true to what the PSB did, and `show --json`'s api_call
events agree call for call with the sandbox's call log. No sleeps: the test waits until the
sandbox reports the call in flight (its call log's ``in_flight``), with a deadline.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time

import httpx
import pytest

from migration_engine.engine.operator_changes import CANCEL_AFTER_TAKEOVER, CANCEL_WITH_KEY
from migration_engine.sandbox import SandboxConfig
from tests.support import ROOT, engine_env, kvk, seed_batch
from tests.support.cli import BIN, as_json, peppol_migrate
from tests.support.races import audited_calls, psb_calls

PARTY = kvk(301)
LATENCY_MS = 4000  # every API call: long enough for an operator to act while one is in flight
FAST = {
    "PEPPOL_MIGRATE_TAKEOVER__POLL_S": "0.2",
    "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": "0.4",
    "PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S": "0.05",
    "PEPPOL_MIGRATE_RETRY__BASE_S": "0.05",
    "PEPPOL_MIGRATE_HANDOFF__MODE": "manual",  # outbound stops in key_issued
}
REQUESTED = "requested; applies when the step in flight ends"


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(seed=7, latency_ms=LATENCY_MS)


def cli(env, *args, code=0, input=None):
    result = peppol_migrate(*args, env=env, cwd=ROOT, input=input, timeout=120)
    assert result.returncode == code, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


def wait_in_flight(sandbox, proc, method, path_part, timeout_s=60.0):
    """Until the sandbox holds ``method ...path_part`` for the party, unanswered; the worker must live."""
    deadline = time.monotonic() + timeout_s
    while not any(
        c["method"] == method and path_part in c["path"] for c in sandbox.model.calls_in_flight(PARTY)
    ):
        assert proc.poll() is None, "the worker exited before the call was in flight"
        assert time.monotonic() < deadline, f"no {method} {path_part} in flight within {timeout_s:.0f} s"
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.01)  # a bounded wait on the worker, not a sleep


def fast_again(sandbox):
    """The rest of the run without latency (the call in flight keeps its own)."""
    httpx.post(f"{sandbox.url}/sandbox/faults", json={"latencyMs": 0}, timeout=10).raise_for_status()


# direction, action -> final state, paused
CASES = {
    ("inbound", "cancel"): ("cancelled", False),
    ("inbound", "pause"): ("takeover_submitted", True),
    ("inbound", "key set"): ("completed", False),  # the PUT in flight is accepted: the new key is not needed
    ("outbound", "cancel"): ("cancelled", False),
    ("outbound", "pause"): ("key_issued", True),
    ("outbound", "key set"): ("key_issued", False),  # refused at once: eConnect issues its key
}


@pytest.mark.parametrize(("direction", "action"), sorted(CASES))
def test_an_action_during_the_remote_call_tells_the_truth(tmp_path, sandbox, direction, action):
    want_state, want_paused = CASES[direction, action]
    env = engine_env(f"sqlite:///{tmp_path / 'races.db'}", sandbox.url, **FAST)
    batch = tmp_path / "races.csv"
    inbound = direction == "inbound"
    parties = {"inbound": [PARTY] if inbound else [], "outbound": [] if inbound else [PARTY]}
    seed_batch(sandbox.model, batch, **parties, no_key=[PARTY])
    cli(env, "db", "upgrade")
    cli(env, "import", str(batch), "--batch", "races", "--actor", "alice")
    if inbound:  # the order: the key arrives, the worker PUTs it, the operator acts meanwhile
        key = sandbox.model.provider_prepare("provider-b", PARTY)
        assert "now key_issued" in cli(env, "key", "set", PARTY, "-", "--actor", "alice", input=key + "\n").stdout

    log = (tmp_path / "worker.log").open("wb")
    full_env = {**{k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}, **env}
    proc = subprocess.Popen([str(BIN), "run", "--until-idle"], env=full_env, cwd=ROOT, stdout=log, stderr=log)
    try:
        if inbound:
            wait_in_flight(sandbox, proc, "PUT", "/peppol/config/party/")
        else:
            wait_in_flight(sandbox, proc, "GET", "/prepareToMigrate")
        if action == "key set":
            other = "33EEff%%33EEff%%"
            result = cli(env, "key", "set", PARTY, "-", "--actor", "bob", input=other + "\n", code=0 if inbound else 2)
            printed = result.stdout + result.stderr
            assert (REQUESTED in printed) if inbound else ("eConnect issues its key" in printed)
            assert other not in printed
        else:
            assert REQUESTED in cli(env, action, PARTY, "--actor", "bob").stdout
        fast_again(sandbox)
        assert proc.wait(timeout=120) == 0, (tmp_path / "worker.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        log.close()

    shown = as_json(cli(env, "show", PARTY, "--json"))["migrations"][0]
    events = shown["events"]
    assert (shown["state"], bool(shown["paused"])) == (want_state, want_paused)
    # The PSB's call log and the audit agree call for call; every call is the worker's.
    calls = psb_calls(sandbox.model, PARTY)
    assert audited_calls(events) == calls and calls
    assert all(e["actor"] != "bob" for e in events if e["kind"] == "api_call")
    bobs = [e for e in events if e["actor"] == "bob"]
    if direction == "outbound" and action == "key set":
        assert bobs == []  # refused: nothing written
    else:
        assert bobs[0]["detail"]["requested"] is True and len(bobs) == 2
        assert bobs[0]["from_state"] == ("key_issued" if inbound else "requested")  # during that call
        made = bobs[1]
        # The operator's event comes after the step's outcome (the worker's move).
        worker_moves = [e for e in events if e["kind"] == "transition"]
        assert any(e["seq"] < made["seq"] and e["seq"] > bobs[0]["seq"] for e in worker_moves)
        if action == "cancel":
            assert made["from_state"] == ("takeover_submitted" if inbound else "key_issued")
            assert made["detail"]["note"] == (CANCEL_AFTER_TAKEOVER if inbound else CANCEL_WITH_KEY)
        if action == "key set":
            assert "not_applied" in made["detail"]
    # What the PSB did: the inbound PUT was accepted; the outbound key exists at the SML.
    if inbound:
        assert any(c[0] == "PUT" and c[2] == 200 for c in calls)
    else:
        assert any(c[0] == "GET" and "prepareToMigrate" in c[1] and c[2] == 200 for c in calls)
        assert sandbox.model.party(PARTY)["migration"]["key"]
    assert "intact" in cli(env, "audit", "verify").stdout
