"""Concurrency test on PostgreSQL: four `peppol-migrate run --until-idle` processes share one
1,000-party batch. The sandbox's own call log shows every change at the PSB made exactly
once per party (no migration PUT, prepareToMigrate or permission PUT twice), every party
completes along its path, and the work is spread over the workers.

Run with ``-rP`` (or ``-s``) to see the figures line.
"""

from __future__ import annotations

from collections import Counter

import pytest

from migration_engine.clock import SystemClock
from migration_engine.sandbox import SandboxConfig, SandboxServer
from migration_engine.store import Store
from tests.support import TEST_AUDIT_KEY, engine_env, expected_moves, kvk, seed_batch
from tests.support.durability import Transcript, change_kind, moves_by_migration

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WORKERS = 4
PARTIES = 1000

# Every mutating call a migration makes when all goes right once, whatever its answer (the
# outbound cleanup's DELETE finds no permission to remove, and says 404).
MADE = {
    "to-econnect": Counter({"PUT config": 2, "PUT hook": 1, "PUT user": 1, "PUT enroll": 1}),  # key, capabilities
    "from-econnect": Counter({"GET prepareToMigrate": 1, "DELETE user": 1}),
}


def test_four_workers_share_a_batch_and_never_repeat_a_change(tmp_path, postgres_database):
    db_url = postgres_database.render_as_string(hide_password=False)  # a fresh database
    inbound = [kvk(4000 + i) for i in range(PARTIES // 2)]
    outbound = [kvk(6000 + i) for i in range(PARTIES // 2)]
    with SandboxServer(SandboxConfig(seed=3)) as sandbox:
        seed_batch(sandbox.model, tmp_path / "b.csv", inbound=inbound, outbound=outbound)
        env = engine_env(
            db_url,
            sandbox.url,
            PEPPOL_MIGRATE_WORKER__LEASE_S="10",
            PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
            PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
            PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
        )
        out = Transcript(tmp_path)
        assert out.cli("db", "upgrade", env=env).returncode == 0
        assert out.cli("import", str(tmp_path / "b.csv"), "--batch", "shared", env=env).returncode == 0
        procs = [out.spawn("run", "--until-idle", env=env) for _ in range(WORKERS)]
        codes = [p.wait(timeout=600) for p in procs]
        assert codes == [0] * WORKERS, [t[-2000:] for t in out.everything().values()]
        calls = sandbox.model.calls()

    store = Store(db_url, clock=SystemClock(), audit_key=TEST_AUDIT_KEY)
    records = list(store.list_migrations())
    assert len(records) == PARTIES and {r.state.value for r in records} == {"completed"}
    paths = moves_by_migration(store)
    assert all(paths[r.party_id] == expected_moves(r.direction) for r in records)
    assert store.verify_audit() == []

    made: dict[str, Counter[str]] = {}
    for c in calls:
        if c["mutating"]:
            made.setdefault(c["partyId"], Counter())[change_kind(c)] += 1
    twice = {r.party_id: made.get(r.party_id) for r in records if made.get(r.party_id) != MADE[r.direction.value]}
    assert twice == {}, "a change was made twice (or not at all)"

    actors = Counter(
        e.actor for r in records for e in store.events(r.id) if e.kind == "transition" and e.actor != "test"
    )
    store.close()
    total = sum(actors.values())
    assert len(actors) == WORKERS
    fair = [a for a, n in actors.items() if n >= total / WORKERS / 2]
    assert len(fair) >= 3, actors
    shares = ", ".join(f"{n / total:.0%}" for _, n in actors.most_common())
    print(
        f"\nFIGURES concurrency: {WORKERS} workers on PostgreSQL, {PARTIES} parties completed, {len(calls)} API calls, "
        f"0 mutating calls twice for a party; transitions per worker {shares}"
    )
