"""Crash test: worker processes killed with SIGKILL at random moments during a 200-party batch
against the sandbox; a new worker is started after each kill. Nothing is lost, nothing that
matters is done twice, every audit chain verifies, and no key or secret shows anywhere.

What "nothing that matters is done twice" means, exactly (docs/durability.md, "What the
durability tests prove"): the calls that must not be repeated are the migration PUT (the key),
prepareToMigrate and the handoff POST (through a logging gateway, ``tests/support/gateway.py``).
A call the sandbox (or the gateway) logged whose request id is in no ``api_call`` audit event
was cut off by a kill between the call and its commit. Per party and per such call the test
asserts: its committed steps made it exactly once, and it was made remotely exactly
``1 + (cut-off calls)`` times, each repeat answered as harmless: the PSB answers a migration
PUT with the key that already moved the party 2xx without a second migration; a repeated
prepareToMigrate replaces a key that never left the process; a repeated handoff gives the
provider the same key, which it has used already (its second Migrate is refused and nothing
moves). The profile's upserts (capabilities, user, business card) follow the same count; a
hook is matched by name, so a cut-off hook PUT the PSB completed is not made again; one the
PSB never completed (the kill landed before its body arrived: status 499) is made again. At
least a quarter of the kills must land between such a call and its commit, and the last,
unkilled worker loses nothing.

Run with ``-rP`` (or ``-s``) to see the figures line.
"""

from __future__ import annotations

import random
import signal
from collections import Counter

import pytest

from migration_engine.clock import SystemClock
from migration_engine.machine import Direction
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.store import Store
from tests.support import PROVIDER, TEST_AUDIT_KEY, engine_env, expected_moves, kvk, seed_batch
from tests.support.durability import (
    NON_IDEMPOTENT,
    PSB_CHANGES,
    Transcript,
    audit_request_ids,
    classified,
    database_text,
    file_texts,
    last_seq,
    leaks,
    moves_by_migration,
    secrets_to_find,
    wait_for_calls,
)
from tests.support.gateway import FaultGateway

KILLS = 24  # at least 20 must land while the worker works
INBOUND, OUTBOUND, WRONG_KEYS = 100, 100, 10
WRONG_KEY = "99ZZyy##99ZZyy##"  # what seed_batch writes for a wrong key


@pytest.mark.slow
def test_sigkilled_workers_lose_nothing_and_repeat_nothing_that_matters(tmp_path):
    rng = random.Random(20260105)
    inbound = [kvk(i) for i in range(INBOUND)]
    outbound = [kvk(1000 + i) for i in range(OUTBOUND)]
    wrong = inbound[:WRONG_KEYS]
    with SandboxServer(SandboxConfig(seed=11)) as sandbox, FaultGateway(sandbox.url) as gateway:
        keys = seed_batch(sandbox.model, tmp_path / "b.csv", inbound=inbound, outbound=outbound, wrong_keys=wrong)
        db_url = f"sqlite:///{tmp_path / 'crash.db'}"
        env = engine_env(
            db_url,
            sandbox.url,
            PEPPOL_MIGRATE_HANDOFF__ENDPOINT=f"{gateway.url}/sandbox/providers/{{new_provider}}/handoff",
            PEPPOL_MIGRATE_WORKER__LEASE_S="2",  # a killed worker's claims come back after 2 s
            PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
            PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
            PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
            PEPPOL_MIGRATE_RETRY__BASE_S="0.05",
            PEPPOL_MIGRATE_RETRY__MAX_S="0.5",
        )
        out = Transcript(tmp_path)
        assert out.cli("db", "upgrade", env=env).returncode == 0
        assert out.cli("import", str(tmp_path / "b.csv"), "--batch", "crash", env=env).returncode == 0

        kills = 0
        windows: list[tuple[int, int, int, int]] = []  # per killed worker: its calls' seq ranges
        wals: dict[str, str] = {}
        while kills < KILLS:
            started, started_gw = last_seq(sandbox.model), len(gateway.calls())
            proc = out.spawn("run", "--until-idle", env=env)
            # Kill after a random number of API calls: mid-request, mid-commit, between steps.
            if not wait_for_calls(sandbox.model, proc, started, rng.randint(1, 40), 60):
                break  # it ran out of work first
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
            windows.append((started, last_seq(sandbox.model), started_gw, len(gateway.calls())))
            # What the killed worker wrote, before any checkpoint: the WAL as it left it.
            wal = tmp_path / "crash.db-wal"
            wals[f"crash.db-wal after kill {kills + 1}"] = wal.read_bytes().decode("latin-1") if wal.exists() else ""
            kills += 1
        assert kills == KILLS, f"the batch finished after {kills} kills: give it more work"
        final = out.cli("run", "--until-idle", env=env, timeout=180)
        assert final.returncode == 0, final.stdout + final.stderr

        store = Store(db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
        records = list(store.list_migrations())
        assert sorted(r.party_id for r in records) == sorted(inbound + outbound), "a party was lost"
        states = Counter(r.state.value for r in records)
        assert states == {"completed": INBOUND + OUTBOUND - WRONG_KEYS, "key_rejected": WRONG_KEYS}
        rejected_path = [*expected_moves(Direction.TO_ECONNECT)[:1], ("key_issued", "key_rejected")]
        paths = moves_by_migration(store)
        for r in records:
            expected = rejected_path if r.party_id in wrong else expected_moves(r.direction)
            assert paths[r.party_id] == expected, f"{r.party_id}: a transition is missing or twice"
        assert store.verify_audit() == []
        verify = out.cli("audit", "verify", env=env)
        assert verify.returncode == 0 and "intact" in verify.stdout

        # The PSB agrees; each call that must not be made twice was made once by the committed
        # steps, and again only as often as a kill cut it off from its commit (see the docstring).
        assert all(sandbox.model.owner(p) == "econnect" for p in inbound[WRONG_KEYS:])
        assert all(sandbox.model.owner(p) == PROVIDER for p in wrong + outbound)
        calls = sandbox.model.calls()
        every = classified(calls, gateway.handoffs())
        committed_ids = audit_request_ids(store)
        assert all(c["requestId"] for c in every), "a call without a request id cannot be matched"
        by_party: dict[str, Counter[str]] = {}
        cut_off: dict[str, Counter[str]] = {}
        hooks_undone: Counter[str] = Counter()  # cut-off hook PUTs the PSB never completed
        for c in every:
            if c["mutating"]:
                by_party.setdefault(c["partyId"], Counter())[c["kind"]] += 1
                if c["requestId"] not in committed_ids:
                    cut_off.setdefault(c["partyId"], Counter())[c["kind"]] += 1
                    hooks_undone[c["partyId"]] += c["kind"] == "PUT hook" and c["status"] == 499
        for r in records:
            want = PSB_CHANGES["key_rejected" if r.party_id in wrong else r.direction.value]
            got, lost = by_party.get(r.party_id, Counter()), cut_off.get(r.party_id, Counter())
            made = {k: n for k, n in got.items() if k in want or k in NON_IDEMPOTENT}
            wanted = {k: n + (hooks_undone[r.party_id] if k == "PUT hook" else lost[k]) for k, n in want.items()}
            assert made == wanted, f"{r.party_id}: made {made}, cut off by kills {dict(lost)}"
        # Each repeat was harmless: the PSB accepted the replayed key (a refused one only where the
        # key was wrong), the provider took each party over once and refused the same key again.
        # (A call cut off before its body arrived shows 499 and did nothing at the PSB.)
        for c in every:
            answered = {499} if c["requestId"] not in committed_ids else set()
            if c["kind"] == "PUT migration":
                assert c["status"] in {400 if c["partyId"] in wrong else 200} | answered, c
            elif c["kind"] in NON_IDEMPOTENT:
                assert c["status"] in answered or 200 <= c["status"] < 300, c
        taken = Counter((e["partyId"], e["outcome"] == "migrated") for e in sandbox.model.provider_log())
        for p in outbound:
            assert taken[(p, True)] == 1 and taken[(p, False)] == by_party[p]["POST handoff"] - 1, p
        # The kills that landed between a call that must not be repeated and its commit.
        between = 0
        for low, high, low_gw, high_gw in windows:
            lost_here = [
                c
                for c in every
                if c["kind"] in NON_IDEMPOTENT
                and c["requestId"] not in committed_ids
                and (low < c["seq"] <= high if c["kind"] != "POST handoff" else low_gw < c["seq"] <= high_gw)
            ]
            between += bool(lost_here)
        last_run = [c for c in every if c["seq"] > (windows[-1][1] if c["kind"] != "POST handoff" else windows[-1][3])]
        assert last_run and all(c["requestId"] in committed_ids for c in last_run), "the last worker lost a call"
        assert between >= KILLS // 4, f"only {between} kills landed between a non-idempotent call and its commit"
        repeats: Counter[str] = Counter()
        for lost in cut_off.values():
            repeats.update({k: n for k, n in lost.items() if k in NON_IDEMPOTENT})

        # Workers: every killed one left its row behind (no stopped_at); the last one stopped.
        workers = store.workers(since=records[0].created_at)
        assert len(workers) == kills + 1 and sum(w.stopped_at is not None for w in workers) == 1
        store.close()

        shown = [out.cli("show", p, "--json", env=env) for p in (inbound[0], inbound[-1], outbound[0])]
        status = out.cli("status", env=env)
        assert status.returncode == 0 and all(s.returncode == 0 for s in shown)
        texts = out.everything() | {"database": database_text(db_url)}
        assert not [name for name, text in texts.items() if '"level": "error"' in text or "Traceback" in text]
        # The files too, as bytes: the database, its WAL as each killed worker left it, the logs;
        # the batch file holds the inbound keys on purpose (the operator's input).
        files = file_texts(tmp_path, skip={"b.csv": "the inbound keys, as the operator gave them"})
        assert "crash.db" in files and sum(len(w) > 0 for w in wals.values()) >= KILLS // 2
        assert leaks(texts | files | wals, secrets_to_find(sandbox, *keys.values(), WRONG_KEY)) == []

        print(
            f"\nFIGURES crash: {kills} SIGKILLs survived, {len(workers)} worker processes, "
            f"{len(records)} parties, 0 lost, {states['completed']} completed, {states['key_rejected']} key_rejected; "
            f"{len(calls)} API calls; {between} kills landed between a non-idempotent call and its commit, "
            f"repeated after them (each harmless): {dict(repeats) or 'none'}; stale results discarded: "
            f"{sum(t.count('stale_result') for t in out.everything().values())}"
        )
