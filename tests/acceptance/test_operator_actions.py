"""Every operator action through the CLI, as a service desk runs it, against the sandbox.

pause / resume (one party and a whole batch), cancel (and its refusal on a completed
migration), retry of a migration that needs attention, `key set` after a refused key
(key_rejected -> key_issued -> completed), `keys export` with handoff.mode = manual (a 0600
file, the migrations marked delivered) and an outbound key that expires because the new
provider never uses it, then is re-issued by `retry`. Each action is audited with the
operator's name, and no key ever shows in anything the CLI prints.
"""

from __future__ import annotations

import csv
import getpass
import stat
from datetime import datetime

from tests.support import PROVIDER, ROOT, engine_env, kvk, seed_batch
from tests.support.cli import as_json, peppol_migrate

FAST = {
    "PEPPOL_MIGRATE_TAKEOVER__POLL_S": "0.2",
    "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": "0.4",
    "PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S": "0.05",
    "PEPPOL_MIGRATE_RETRY__BASE_S": "0.05",
}


class Cli:
    """Runs the CLI with one environment and keeps everything it printed, for the leak check."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.printed: list[str] = []

    def __call__(self, *args: str, code: int = 0, input: str | None = None, **env: str):
        result = peppol_migrate(*args, env={**self.env, **env}, cwd=ROOT, input=input, timeout=120)
        self.printed += [result.stdout, result.stderr]
        assert result.returncode == code, f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
        assert "Traceback" not in result.stderr
        return result

    def json(self, *args: str, **env: str):
        return as_json(self(*args, "--json", code=0, **env))

    def show(self, party: str) -> dict:
        """The party's newest migration (state, last error, ...) with its audit ``events``."""
        return self.json("show", party)["migrations"][0]

    def counts(self, batch: str) -> dict[tuple[str, str], int]:
        """(direction, state) -> migrations, leaving out the zeros; and ("paused", "") -> paused."""
        status = self.json("status", "--batch", batch)
        found = {(d, s): n for d, counts in status["by_direction"].items() for s, n in counts.items() if n}
        return {**found, ("paused", ""): status["paused"]}

    def assert_no_key_printed(self, keys) -> None:
        everything = "\n".join(self.printed)
        for key in keys:
            assert key not in everything


def operator_events(events: list[dict]) -> list[tuple[str, str, str, str]]:
    return [
        (e["detail"].get("action", ""), e["actor"], e.get("from_state", ""), e.get("to_state", ""))
        for e in events
        if e["kind"] == "operator"
    ]


def test_pause_resume_cancel_retry_and_rekey(tmp_path, sandbox):
    cli = Cli(engine_env(f"sqlite:///{tmp_path / 'ops.db'}", sandbox.url, **FAST))
    in1, in2, in3, out1, out2 = kvk(101), kvk(102), kvk(103), kvk(151), kvk(152)
    batch = tmp_path / "ops.csv"
    seed_batch(sandbox.model, batch, inbound=[in1, in2, in3], outbound=[out2], wrong_keys=[in2], no_key=[in3])
    with batch.open("a", encoding="utf-8") as fh:  # out1 is not eConnect's: its prepareToMigrate gets 404
        fh.write(f"{out1},from-econnect,,,Unknown at eConnect,{PROVIDER}\n")
    me = f"operator:{getpass.getuser()}"

    cli("db", "upgrade")
    cli("import", str(batch), "--batch", "ops", "--actor", "alice")

    # A whole batch paused: the worker leaves it alone.
    paused = cli("pause", "--batch", "ops", "--actor", "alice")
    assert paused.stdout.count(": ok: pause done") == 5
    cli("run", "--until-idle")
    assert cli.counts("ops") == {
        ("to-econnect", "requested"): 3,
        ("from-econnect", "requested"): 2,
        ("paused", ""): 5,
    }
    cli("resume", "--batch", "ops", "--actor", "alice")

    # One party paused; refusals say why.
    assert "now requested (paused)" in cli("pause", in1, "--actor", "bob").stdout
    assert "already paused" in cli("pause", in1, "--actor", "bob", code=2).stderr
    assert "now cancelled" in cli("cancel", in3, "--actor", "bob").stdout
    refused = cli("retry", in2, "--actor", "bob", code=2)
    assert "only needs_attention" in refused.stderr and "requested" in refused.stderr

    cli("run", "--until-idle")
    status = cli.json("status", "--batch", "ops")
    assert status["by_direction"]["to-econnect"]["key_rejected"] == 1
    assert status["by_direction"]["from-econnect"]["needs_attention"] == 1
    assert status["by_direction"]["from-econnect"]["completed"] == 1
    assert status["paused"] == 1 and status["by_direction"]["to-econnect"]["requested"] == 1  # in1
    assert status["errors_by_code"], status
    out1_shown = cli.show(out1)
    assert out1_shown["state"] == "needs_attention" and out1_shown["failed_state"] == "requested"
    assert "eConnect does not serve this party" in out1_shown["last_error"]

    assert "eConnect issues its key" in cli("key", "set", out1, "33EEff%%33EEff%%", code=2).stderr
    cli("resume", in1)  # --actor defaults to the OS user
    new_key = sandbox.model.provider_prepare(PROVIDER, in2)
    assert "now key_issued" in cli("key", "set", in2, "-", "--actor", "carol", input=new_key + "\n").stdout
    sandbox.model.register(out1, "econnect")  # the service desk fixed the party at eConnect
    assert "now requested" in cli("retry", out1, "--actor", "carol").stdout

    cli("run", "--until-idle")
    status = cli.json("status", "--batch", "ops")
    assert status["completed"] == 4, status
    assert status["by_direction"]["to-econnect"]["cancelled"] == 1
    assert status["paused"] == 0 and status["percent_done"] == 100.0

    # Finished migrations refuse clearly, naming what became of them.
    refused = cli("cancel", in1, code=2)
    assert "cannot cancel" in refused.stderr and "already completed" in refused.stderr
    refused = cli("retry", in3, code=2)
    assert "cannot retry" in refused.stderr and "already cancelled" in refused.stderr
    assert "already completed" in cli("key", "set", in2, "44GGhh@@44GGhh@@", code=2).stderr
    assert "no open migration to pause" in cli("pause", "--batch", "ops").stdout
    assert "no batch named" in cli("pause", "--batch", "nope", code=2).stderr

    # The audit trail names who did what.
    assert operator_events(cli.show(in1)["events"]) == [
        ("pause", "alice", "requested", "requested"),
        ("resume", "alice", "requested", "requested"),
        ("pause", "bob", "requested", "requested"),
        ("resume", me, "requested", "requested"),
    ]
    rekey = cli.show(in2)["events"]
    assert ("key set", "carol", "key_rejected", "key_issued") in operator_events(rekey)
    assert [e["to_state"] for e in rekey if e["kind"] == "transition"][-1] == "completed"
    key_event = next(e for e in rekey if e["kind"] == "operator" and e["detail"].get("action") == "key set")
    assert key_event["trigger"] == "key_received" and "…" in key_event["detail"]["key"]
    out1_shown = cli.show(out1)
    assert ("retry", "carol", "needs_attention", "requested") in operator_events(out1_shown["events"])
    assert out1_shown["state"] == "completed"
    assert ("cancel", "bob", "requested", "cancelled") in operator_events(cli.show(in3)["events"])
    assert "intact" in cli("audit", "verify").stdout
    cli.assert_no_key_printed([*sandbox.model.issued_keys(), new_key])


def test_keys_export_then_an_expired_key_is_reissued(tmp_path, sandbox):
    # Keys live 3 s from their issue: the new provider uses `taker`'s in time, never `idle`'s.
    short_ttl = str(3 / 3600)
    env = engine_env(
        f"sqlite:///{tmp_path / 'keys.db'}",
        sandbox.url,
        PEPPOL_MIGRATE_HANDOFF__MODE="manual",
        PEPPOL_MIGRATE_KEYS__TTL_H=short_ttl,
        **FAST,
    )
    cli = Cli(env)
    taker, idle = kvk(201), kvk(202)
    seed_batch(sandbox.model, tmp_path / "out.csv", outbound=[taker, idle])
    cli("db", "upgrade")
    cli("import", str(tmp_path / "out.csv"), "--batch", "handoff")
    cli("run", "--until-idle")
    assert cli.counts("handoff") == {("from-econnect", "key_issued"): 2, ("paused", ""): 0}  # waiting for export
    shown = cli("show", idle).stdout + cli("show", idle, "--json").stdout
    assert '"has_key": true' in shown

    keys_file = tmp_path / "handoff-keys.csv"
    exported = cli("keys", "export", "--batch", "handoff", "--out", str(keys_file), "--actor", "dave")
    assert "exported 2 key(s)" in exported.stdout and "2 migration(s) now key_delivered" in exported.stdout
    assert stat.S_IMODE(keys_file.stat().st_mode) == 0o600
    with keys_file.open(encoding="utf-8", newline="") as fh:
        rows = {row["party_id"]: row for row in csv.DictReader(fh)}
    assert set(rows) == {taker, idle}
    assert list(next(iter(rows.values()))) == ["party_id", "migration_key", "issued_at", "new_provider"]
    for row in rows.values():
        assert row["migration_key"] in sandbox.model.issued_keys()
        assert row["new_provider"] == PROVIDER
        datetime.fromisoformat(row["issued_at"])
    assert cli.counts("handoff")[("from-econnect", "key_delivered")] == 2

    refused = cli("keys", "export", "--batch", "handoff", "--out", str(keys_file), code=2)
    assert "exists" in refused.stderr and "--force" in refused.stderr
    empty = cli("keys", "export", "--batch", "handoff", "--out", str(tmp_path / "again.csv"))
    assert "no outbound key is waiting" in empty.stdout and not (tmp_path / "again.csv").exists()
    assert "no batch named" in cli("keys", "export", "--batch", "nope", "--out", str(tmp_path / "x.csv"), code=2).stderr

    sandbox.model.provider_migrate(PROVIDER, taker, rows[taker]["migration_key"])
    cli("run", "--until-idle")
    assert cli.show(taker)["state"] == "completed"
    idle_shown = cli.show(idle)
    assert idle_shown["state"] == "key_expired"
    expired = [e for e in idle_shown["events"] if e.get("trigger") == "key_timed_out"]
    assert expired and expired[0]["from_state"] == "key_delivered"

    # keys.reissue_expired is off: the migration waits for an operator, who asks for a new key.
    assert "now requested" in cli("retry", idle, "--actor", "dave").stdout
    cli("run", "--until-idle")
    assert cli.counts("handoff")[("from-econnect", "key_issued")] == 1
    second = tmp_path / "second.csv"
    assert "exported 1 key(s)" in cli("keys", "export", "--batch", "handoff", "--out", str(second)).stdout
    with second.open(encoding="utf-8", newline="") as fh:
        (row,) = list(csv.DictReader(fh))
    assert row["party_id"] == idle and row["migration_key"] != rows[idle]["migration_key"]
    sandbox.model.provider_migrate(PROVIDER, idle, row["migration_key"])
    cli("run", "--until-idle")
    idle_shown = cli.show(idle)
    assert idle_shown["state"] == "completed"

    actions = operator_events(idle_shown["events"])
    assert ("keys export", "dave", "key_issued", "key_delivered") in actions
    assert ("retry", "dave", "key_expired", "requested") in actions
    assert [a for a, *_ in actions].count("keys export") == 2
    handed = [e for e in idle_shown["events"] if e["kind"] == "operator" and e["detail"].get("action") == "keys export"]
    assert all(e["trigger"] == "key_handed_off" and "…" in e["detail"]["key"] for e in handed)
    assert "intact" in cli("audit", "verify").stdout
    cli.assert_no_key_printed(sandbox.model.issued_keys())
