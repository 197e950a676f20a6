"""The snapshot per migration, on both databases: the worker stores what the network showed as a
``snapshot`` audit event before the first mutating call, once, and a lookup that fails
technically is retried, then holds the party (``parity.snapshot = required``) or lets it go on
without one (``best_effort``).

The sandbox runs on the test's ManualClock; its other provider's SMP publishes what each test
gives the party (``Publication``), its DNS serves the SML zone, its Directory stub the cards.
"""

from __future__ import annotations

from migration_engine.backoffice.importer import import_file
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import State
from migration_engine.peppol.snapshot import REGISTERED, TECHNICAL_FAILURE, BusinessCardSeen, PartySnapshot
from migration_engine.sandbox import catalog
from migration_engine.sandbox.publications import Publication
from tests.support import engine_settings, kvk, seed_batch

CARD = BusinessCardSeen(name="Bakkerij Test BV", country_code="BE", geo_info="Gent", email="ap@bakkerij.example")
ORDERS = (catalog.BIS3_INVOICE.document_type_id, catalog.ORDER_ORDERING.document_type_id)


def network_runtime(db_url, sandbox, clock, **extra) -> Runtime:
    env = {
        "PEPPOL_MIGRATE_VERIFY__PEPPOL_NETWORK": "true",
        "PEPPOL_MIGRATE_VERIFY__DNS_SERVER": sandbox.dns_address,
        "PEPPOL_MIGRATE_VERIFY__SML_ZONE": sandbox.model.config.sml_zone,
        "PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST": sandbox.smp_url("econnect"),
        "PEPPOL_MIGRATE_VERIFY__TIMEOUT_S": "2",
        "PEPPOL_MIGRATE_NETWORK__DIRECTORY_URL": sandbox.directory_url,
        "PEPPOL_MIGRATE_LOOKUPS__BACKOFF_S": "0",
        "PEPPOL_MIGRATE_TAKEOVER__POLL_S": "1",
        "PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S": "2",
        **extra,
    }
    rt = Runtime(engine_settings(db_url, sandbox.url, **env), clock=clock)
    rt.store.upgrade()
    return rt


def run_batch(rt, tmp_path, sandbox, **parties) -> None:
    seed_batch(sandbox.model, tmp_path / "batch.csv", **parties)
    import_file(rt, path=tmp_path / "batch.csv", batch_name="b", dry_run=False, actor="test")
    with rt.worker(worker_id="w") as worker:
        worker.run(until_idle=True)


def first_call(events, method, path):
    """The first ``api_call`` event of ``method`` whose path ends with ``path`` (party ids encoded)."""
    wanted = path.replace(":", "%3A")
    return next(e for e in events if e.kind == "api_call" and e.http_method == method and e.http_path.endswith(wanted))


def test_inbound_snapshot_is_stored_before_the_migration_put(tmp_path, sandbox, clock, db_url):
    party = kvk(11)
    sandbox.model.publish(party, Publication(document_types=ORDERS, business_card=CARD, card_at="smp"))
    rt = network_runtime(db_url, sandbox, clock)
    run_batch(rt, tmp_path, sandbox, inbound=[party])

    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    events = rt.store.events(record.id)
    snapshots = [e for e in events if e.kind == "snapshot"]
    assert len(snapshots) == 1, "one snapshot per migration"
    [taken] = snapshots
    put = first_call(events, "PUT", f"/peppol/config/party/{party}")
    assert taken.seq < put.seq, "the snapshot is committed before the first mutating call"
    assert (taken.from_state, taken.to_state) == (State.KEY_ISSUED, State.KEY_ISSUED)
    snap = PartySnapshot.from_detail(taken.detail)
    assert (snap.lookup, snap.party_id, snap.smp_url) == (REGISTERED, party, sandbox.smp_url("provider-b"))
    assert snap.document_types == list(ORDERS)
    assert snap.business_card is not None and snap.business_card.name == CARD.name
    assert rt.store.verify_audit() == []
    rt.close()


def test_outbound_snapshot_is_stored_before_prepare_to_migrate(tmp_path, sandbox, clock, db_url):
    party = kvk(12)
    rt = network_runtime(db_url, sandbox, clock)
    run_batch(rt, tmp_path, sandbox, outbound=[party])

    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    events = rt.store.events(record.id)
    [taken] = [e for e in events if e.kind == "snapshot"]
    prepare = first_call(events, "GET", f"/peppol/{party}/prepareToMigrate")
    assert taken.seq < prepare.seq
    snap = PartySnapshot.from_detail(taken.detail)
    assert snap.econnect and snap.smp_url == sandbox.smp_url("econnect")
    # Outbound receive parity: the new provider's SMP (default: the BIS 3 invoice alone) is
    # compared with what eConnect published; parity.outbound = warn completes with a warning.
    [done] = [e for e in events if e.kind == "transition" and e.to_state is State.COMPLETED]
    assert done.detail["network"]["econnect_smp"]["service_group"] == "gone"
    assert done.detail["parity"]["policy"] == "warn"
    missing = [dt for dt in snap.document_types if dt != catalog.BIS3_INVOICE.document_type_id]
    assert done.detail["parity"]["missing"] == missing
    assert ("warning" in done.detail) == bool(missing)
    rt.close()


def test_no_snapshot_without_the_network_switch(tmp_path, sandbox, clock, db_url):
    party = kvk(13)
    rt = Runtime(engine_settings(db_url, sandbox.url), clock=clock)
    rt.store.upgrade()
    run_batch(rt, tmp_path, sandbox, inbound=[party])
    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    assert not [e for e in rt.store.events(record.id) if e.kind == "snapshot"]
    rt.close()


def test_a_failing_snapshot_is_retried_then_holds_the_party_before_any_put(tmp_path, sandbox, clock, db_url):
    party = kvk(14)
    sandbox.model.publish(party, Publication(smp_answer="error"))
    rt = network_runtime(
        db_url, sandbox, clock, PEPPOL_MIGRATE_RETRY__MAX_ATTEMPTS="3", PEPPOL_MIGRATE_LOOKUPS__ATTEMPTS="1"
    )
    run_batch(rt, tmp_path, sandbox, inbound=[party])

    [record] = rt.store.find_party(party)
    assert record.state is State.NEEDS_ATTENTION and record.failed_state is State.KEY_ISSUED
    assert record.last_error_code == "SNAPSHOT" and "gave up after 3 attempts" in (record.last_error or "")
    events = rt.store.events(record.id)
    errors = [e for e in events if e.kind == "error"]
    assert len(errors) == 2 and all(e.detail["code"] == "SNAPSHOT" for e in errors)
    assert not [e for e in events if e.kind == "api_call" and e.http_method == "PUT"], "no mutating call"
    assert sandbox.model.owner(party) == "provider-b"
    rt.close()


def test_best_effort_goes_on_without_a_snapshot_after_the_retries(tmp_path, sandbox, clock, db_url):
    party = kvk(15)
    sandbox.model.publish(party, Publication(smp_answer="error"))
    rt = network_runtime(
        db_url,
        sandbox,
        clock,
        PEPPOL_MIGRATE_RETRY__MAX_ATTEMPTS="2",
        PEPPOL_MIGRATE_LOOKUPS__ATTEMPTS="1",
        PEPPOL_MIGRATE_PARITY__SNAPSHOT="best_effort",
    )
    run_batch(rt, tmp_path, sandbox, inbound=[party])

    [record] = rt.store.find_party(party)
    assert record.state is State.COMPLETED
    events = rt.store.events(record.id)
    [taken] = [e for e in events if e.kind == "snapshot"]
    assert taken.detail["lookup"] == TECHNICAL_FAILURE
    assert "going on without a snapshot after 2 tries" in taken.detail["extra"]["best_effort"]
    [verified] = [e for e in events if e.kind == "transition" and e.to_state is State.COMPLETED]
    assert verified.detail["parity"] == {
        "policy": "require",
        "baseline": False,
        "received": 0,
        "missing": [],
        "verdict": "pass",
    }
    rt.close()
