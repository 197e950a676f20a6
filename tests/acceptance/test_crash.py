"""Crash test: worker processes killed with SIGKILL at random moments during a 200-party batch
against the sandbox; a new worker is started after each kill. Nothing is lost, nothing that
matters is done twice, every audit chain verifies, and no key or secret shows anywhere.

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
from tests.support import engine_env, expected_moves, kvk, seed_batch
from tests.support.durability import (
    PSB_CHANGES,
    Transcript,
    database_text,
    last_seq,
    leaks,
    moves_by_migration,
    psb_changes,
    secrets_to_find,
    wait_for_calls,
)

KILLS = 24  # at least 20 must land while the worker works
INBOUND, OUTBOUND, WRONG_KEYS = 100, 100, 10
WRONG_KEY = "99ZZyy##99ZZyy##"  # what seed_batch writes for a wrong key


@pytest.mark.slow
def test_sigkilled_workers_lose_nothing_and_repeat_nothing_that_matters(tmp_path):
    rng = random.Random(20260105)
    inbound = [kvk(i) for i in range(INBOUND)]
    outbound = [kvk(1000 + i) for i in range(OUTBOUND)]
    wrong = inbound[:WRONG_KEYS]
    with SandboxServer(SandboxConfig(seed=11)) as sandbox:
        keys = seed_batch(sandbox.model, tmp_path / "b.csv", inbound=inbound, outbound=outbound, wrong_keys=wrong)
        db_url = f"sqlite:///{tmp_path / 'crash.db'}"
        env = engine_env(
            db_url,
            sandbox.url,
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
        while kills < KILLS:
            proc = out.spawn("run", "--until-idle", env=env)
            # Kill after a random number of API calls: mid-request, mid-commit, between steps.
            if not wait_for_calls(sandbox.model, proc, last_seq(sandbox.model), rng.randint(1, 40), 60):
                break  # it ran out of work first
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=10) == -signal.SIGKILL
            kills += 1
        assert kills == KILLS, f"the batch finished after {kills} kills: give it more work"
        final = out.cli("run", "--until-idle", env=env, timeout=180)
        assert final.returncode == 0, final.stdout + final.stderr

        store = Store(db_url, clock=SystemClock())
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

        # The PSB agrees; and each change the PSB made for a party, it made once (a repeated
        # call after a kill found the change done, or repeated an upsert: counted here).
        assert all(sandbox.model.owner(p) == "econnect" for p in inbound[WRONG_KEYS:])
        assert all(sandbox.model.owner(p) == "provider-b" for p in wrong + outbound)
        calls = sandbox.model.calls()
        changes = psb_changes(calls)
        extra: Counter[str] = Counter()
        for r in records:
            want = PSB_CHANGES["key_rejected" if r.party_id in wrong else r.direction.value]
            got = changes.get(r.party_id, Counter())
            assert set(got) == set(want) and all(got[k] >= n for k, n in want.items()), r.party_id
            extra.update(got - want)

        # Workers: every killed one left its row behind (no stopped_at); the last one stopped.
        workers = store.workers(since=records[0].created_at)
        assert len(workers) == kills + 1 and sum(w.stopped_at is not None for w in workers) == 1
        store.close()

        shown = [out.cli("show", p, "--json", env=env) for p in (inbound[0], inbound[-1], outbound[0])]
        status = out.cli("status", env=env)
        assert status.returncode == 0 and all(s.returncode == 0 for s in shown)
        texts = out.everything() | {"database": database_text(db_url)}
        assert not [name for name, text in texts.items() if '"level": "error"' in text or "Traceback" in text]
        assert leaks(texts, secrets_to_find(sandbox, *keys.values(), WRONG_KEY)) == []

        print(
            f"\nFIGURES crash: {kills} SIGKILLs survived, {len(workers)} worker processes, "
            f"{len(records)} parties, 0 lost, {states['completed']} completed, {states['key_rejected']} key_rejected; "
            f"{len(calls)} API calls; repeated PSB changes after kills (upserts and re-checks): "
            f"{dict(extra) or 'none'}; stale results discarded: "
            f"{sum(t.count('stale_result') for t in out.everything().values())}"
        )
