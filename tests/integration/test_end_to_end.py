"""Both directions through the real sandbox over loopback, with a worker restart half-way.

The sandbox and the engine share one ManualClock: polls and backoffs advance it instead of
sleeping, so the whole run takes as long as the HTTP calls do.
"""

from __future__ import annotations

import pytest

from migration_engine.backoffice import actions
from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.sandbox import SandboxConfig, SandboxServer
from tests.support import engine_settings, expected_moves, kvk, seed_batch

# Seeds whose varied PSB details cover every refusal status and both repeat-prepare modes.
SEEDS = [2, 4, 7, 9]


@pytest.fixture
def sandbox_config():
    return SandboxConfig(propagation_delay_s=20, takeover_delay_s=30)


def transitions_of(store, migration_id):
    return [(e.from_state.value, e.to_state.value) for e in store.events(migration_id) if e.kind == "transition"]


def test_fifty_each_way_survive_a_worker_restart(tmp_path, sandbox, clock, db_url):
    inbound = [kvk(i) for i in range(50)]
    outbound = [kvk(100 + i) for i in range(50)]
    seed_batch(sandbox.model, tmp_path / "batch.csv", inbound=inbound, outbound=outbound)
    settings = engine_settings(db_url, sandbox.url)

    first = Runtime(settings, clock=clock)
    first.store.upgrade()
    import_file(first, path=tmp_path / "batch.csv", batch_name="b1", dry_run=False, actor="test")
    worker = first.worker(worker_id="worker-1")
    # Run the first worker until about half of the steps are done, then close it.
    while worker.steps_run < 300:
        if not worker.tick() and not worker.in_flight():
            # tick() also says 0 while a finished step's thread claims the next rows: move the
            # clock only when nothing is due or leased, or those fresh leases would run out.
            summary = first.store.work_summary()
            if not summary.due_now and not summary.leased:
                clock.advance(5)
    worker.close()
    counts = {state: n for _, state, n in first.store.counts(batch_name="b1")}
    assert counts.get(State.COMPLETED, 0) < 100, "the restart must happen half-way"
    first.close()

    second = Runtime(settings, clock=clock)
    second.worker(worker_id="worker-2").run(until_idle=True)
    store = second.store
    records = list(store.list_migrations(batch_name="b1"))
    assert len(records) == 100
    assert {r.state for r in records} == {State.COMPLETED}
    actors = set()
    for record in records:
        assert transitions_of(store, record.id) == expected_moves(record.direction), record.party_id
        actors |= {e.actor for e in store.events(record.id) if e.kind == "transition"}
    assert {"worker-1", "worker-2"} <= actors
    assert store.verify_audit() == []
    # The sandbox agrees: inbound parties are eConnect's, outbound ones the other provider's.
    assert all(sandbox.model.owner(p) == "econnect" for p in inbound)
    assert all(sandbox.model.owner(p) == "provider-b" for p in outbound)
    second.close()


@pytest.mark.parametrize("vary_seed", SEEDS)
def test_a_wrong_key_is_rejected_with_the_psb_message_and_a_new_key_completes(tmp_path, clock, db_url, vary_seed):
    """The PSB does not document how it refuses a key; the sandbox varies it per seed."""

    config = SandboxConfig(vary_seed=vary_seed).effective()
    with SandboxServer(config, clock=clock) as sandbox:
        _rekey(tmp_path, sandbox, clock, db_url)


def test_the_varied_details_cover_every_refusal_status():
    configs = [SandboxConfig(vary_seed=s).effective() for s in SEEDS]
    assert {c.key_reject_status for c in configs} == {400, 403, 404, 422}
    assert {c.repeat_prepare for c in configs} == {"overwrite", "same"}


def _rekey(tmp_path, sandbox, clock, db_url):
    party = kvk(7)
    seed_batch(sandbox.model, tmp_path / "batch.csv", inbound=[party], wrong_keys=[party])
    rt = Runtime(engine_settings(db_url, sandbox.url), clock=clock)
    rt.store.upgrade()
    import_file(rt, path=tmp_path / "batch.csv", batch_name="b", dry_run=False, actor="test")
    rt.worker().run(until_idle=True)
    [record] = rt.store.find_party(party)
    assert record.state is State.KEY_REJECTED
    assert "new key" in (record.last_error or "")
    assert "99ZZyy##99ZZyy##" not in (record.last_error or "")

    new_key = sandbox.model.provider_prepare("provider-b", party)
    actions.key_set(rt.store, rt.vault(), rt.settings, party=party, key=new_key, actor="operator:test")
    rt.worker().run(until_idle=True)
    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    kinds = [(e.kind, e.to_state.value if e.to_state else None) for e in rt.store.events(record.id)]
    assert ("operator", "key_issued") in kinds
    rt.close()


def test_an_outbound_key_expires_then_is_reissued(tmp_path, clock, db_url):
    config = SandboxConfig(takeover_delay_s=10 * 24 * 3600)  # the new provider never acts in time
    with SandboxServer(config, clock=clock) as sandbox:
        party = kvk(8)
        seed_batch(sandbox.model, tmp_path / "batch.csv", outbound=[party])
        rt = Runtime(
            engine_settings(
                db_url, sandbox.url, PEPPOL_MIGRATE_KEYS__TTL_H="1", PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="600"
            ),
            clock=clock,
        )
        rt.store.upgrade()
        import_file(rt, path=tmp_path / "batch.csv", batch_name="b", dry_run=False, actor="test")
        rt.worker().run(until_idle=True)
        [record] = rt.store.find_party(party)
        assert record.state is State.KEY_EXPIRED and record.direction is Direction.FROM_ECONNECT
        rt.close()
