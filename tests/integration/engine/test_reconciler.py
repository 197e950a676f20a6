"""The reconciler against the sandbox over loopback (its DNS, SMPs and PSB) on a ManualClock:
each finding is found, recorded once as a ``finding`` audit event (not again while unchanged,
again after ``reconciler.realert_h``), shown by `status`, and cleared when it goes away.

Migrations are written into the store in the state under test; the sandbox is put in the
situation each finding describes through its model (owners, eConnect's configurations).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest

from migration_engine.backoffice import overview
from migration_engine.engine.reconciler import Finding, Reconciler, ReconcilerBusy
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.sandbox import SandboxConfig
from migration_engine.sandbox.config import ProviderConfig
from migration_engine.settings import with_overrides
from migration_engine.store import Change, EventIn, NewMigration
from tests.support import engine_settings, kvk

KEY_UNUSED_H = 24
REALERT_H = 48
RECENT_DAYS = 14


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(
        providers=(
            ProviderConfig("provider-b", "https://ap.provider-b.example/as4"),
            ProviderConfig("provider-c", "https://ap.provider-c.example/as4"),
        )
    )


@pytest.fixture
def rt(db_url, sandbox, clock) -> Iterator[Runtime]:
    settings = engine_settings(
        db_url,
        sandbox.url,
        PEPPOL_MIGRATE_VERIFY__DNS_SERVER=sandbox.dns_address,
        PEPPOL_MIGRATE_VERIFY__SML_ZONE=sandbox.model.config.sml_zone,
        PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST=sandbox.smp_url("econnect"),
        PEPPOL_MIGRATE_VERIFY__TIMEOUT_S="2",
    )
    settings = with_overrides(
        settings,
        network={"known_smps": tuple(f"{sandbox.smp_url(p)}={p}" for p in ("provider-b", "provider-c"))},
        reconciler={"key_unused_h": KEY_UNUSED_H, "realert_h": REALERT_H, "recent_days": RECENT_DAYS},
    )
    runtime = Runtime(settings, clock=clock)
    runtime.store.upgrade()
    yield runtime
    runtime.close()


@pytest.fixture
def reconciler(rt) -> Iterator[Reconciler]:
    r = rt.reconciler(owner="test")
    yield r
    r.close()


def add(rt, party, direction, state, **fields) -> int:
    rt.store.add_migrations(
        batch_name="b", items=[NewMigration(party_id=party, direction=direction, state=state, **fields)], actor="t"
    )
    return rt.store.find_party(party)[0].id


def complete(rt, party) -> None:
    """Move the party's migration to completed, as the worker's last step would."""
    record = rt.store.find_party(party)[0]
    event = EventIn(kind="transition", actor="w", from_state=record.state, to_state=State.COMPLETED)
    change = Change(record.id, record.state, record.version, new_state=State.COMPLETED, events=[event])
    assert rt.store.apply(change) is not None


def inbound_completed(rt, sandbox, party) -> int:
    sandbox.model.register(party, "econnect")
    mid = add(rt, party, Direction.TO_ECONNECT, State.PERMISSIONS_SET, profile="default")
    complete(rt, party)
    return mid


def outbound_delivered(rt, sandbox, clock, party) -> int:
    sandbox.model.register(party, "econnect")
    return add(
        rt,
        party,
        Direction.FROM_ECONNECT,
        State.KEY_DELIVERED,
        new_provider="provider-b",
        key_issued_at=clock.now(),
    )


def finding_events(rt, mid):
    return [e for e in rt.store.events(mid) if e.kind == "finding"]


def kinds(found: list[Finding], status: str = "open") -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in found:
        if f.status == status:
            out.setdefault(f.party_id, set()).add(f.kind)
    return out


def test_an_unused_outbound_key_is_found_once_again_later_and_cleared_when_used(rt, reconciler, sandbox, clock):
    party = kvk(1)
    mid = outbound_delivered(rt, sandbox, clock, party)
    version = rt.store.get(mid).version

    assert reconciler.run_once() == []  # issued just now: nothing to say
    clock.advance((KEY_UNUSED_H + 1) * 3600)
    [found] = reconciler.run_once()
    assert (found.kind, found.status, found.change) == ("key_unused", "open", "new")
    assert "has not been used" in found.summary and "provider-b" in found.action
    [event] = finding_events(rt, mid)
    assert event.actor == "reconciler" and event.from_state is None and event.to_state is None
    assert event.detail["finding"] == "key_unused" and event.detail["status"] == "open"
    assert event.detail["seen"]["new_provider"] == "provider-b"
    record = rt.store.get(mid)
    assert (record.state, record.version) == (State.KEY_DELIVERED, version), "a finding does not move the migration"

    clock.advance(3600)
    [again] = reconciler.run_once()
    assert again.change == "unchanged" and len(finding_events(rt, mid)) == 1, "no repeat while unchanged"
    clock.advance(REALERT_H * 3600)
    [again] = reconciler.run_once()
    assert again.change == "again" and len(finding_events(rt, mid)) == 2, "recorded again after realert_h"

    sandbox.model.provider_migrate("provider-b", party, sandbox.model.psb_prepare_to_migrate(party))
    [cleared] = reconciler.run_once()
    assert (cleared.kind, cleared.status) == ("key_unused", "cleared")
    assert finding_events(rt, mid)[-1].detail["status"] == "cleared"
    assert reconciler.run_once() == []
    assert len(finding_events(rt, mid)) == 3
    assert rt.store.verify_audit() == []


def test_sml_at_econnect_without_a_psb_configuration(rt, reconciler, sandbox, clock):
    party = kvk(2)
    mid = inbound_completed(rt, sandbox, party)
    assert reconciler.run_once() == []

    with sandbox.model.lock:  # the PSB loses the configuration; the SML still points at eConnect
        sandbox.model.econnect.remove(party)
    found = reconciler.run_once()
    assert kinds(found) == {party: {"sml_without_config"}}, "one finding for one cause"
    [event] = finding_events(rt, mid)
    assert event.detail["seen"]["smp_url"] == sandbox.smp_url("econnect")
    assert "no configuration" in event.detail["summary"]
    assert reconciler.run_once()[0].change == "unchanged"
    assert len(finding_events(rt, mid)) == 1

    status = overview.status(rt.store, now=clock.now())["findings"]
    assert status["open"] == 1 and status["by_kind"] == {"sml_without_config": 1}
    assert status["first"][0]["party_id"] == party

    sandbox.model.register(party, "econnect")  # the configuration is back
    assert kinds(reconciler.run_once(), "cleared") == {party: {"sml_without_config"}}
    assert overview.status(rt.store, now=clock.now())["findings"]["open"] == 0


def test_a_third_provider_outbound_and_after_an_inbound(rt, reconciler, sandbox, clock):
    out_party, in_party = kvk(3), kvk(4)
    out_mid = outbound_delivered(rt, sandbox, clock, out_party)
    in_mid = inbound_completed(rt, sandbox, in_party)
    assert reconciler.run_once() == []

    sandbox.model.register(out_party, "provider-c")  # neither eConnect nor the new provider
    sandbox.model.register(in_party, "provider-c")  # left eConnect after the inbound completed
    found = reconciler.run_once()
    assert kinds(found) == {out_party: {"third_provider"}, in_party: {"third_provider"}}
    [out_event] = finding_events(rt, out_mid)
    assert out_event.detail["seen"] == {
        "smp_url": sandbox.smp_url("provider-c"),
        "provider": "provider-c",
        "new_provider": "provider-b",
    }
    [in_event] = finding_events(rt, in_mid)
    assert "after the inbound migration completed" in in_event.detail["summary"]

    sandbox.model.register(out_party, "provider-b")  # the new provider after all: cleared
    sandbox.model.register(in_party, "provider-b")  # moved on again: a changed finding
    found = reconciler.run_once()
    assert kinds(found, "cleared") == {out_party: {"third_provider"}}
    [changed] = [f for f in found if f.party_id == in_party]
    assert changed.change == "changed" and changed.seen["provider"] == "provider-b"
    assert rt.store.verify_audit() == []


def test_a_completed_inbound_party_no_longer_served_then_out_of_the_window(rt, reconciler, sandbox, clock):
    party = kvk(5)
    mid = inbound_completed(rt, sandbox, party)
    sandbox.model.psb_delete_config(party)  # unregistered from the SML as well
    [found] = reconciler.run_once()
    assert (found.kind, found.change, found.seen["lookup"]) == ("not_served", "new", "not_registered")
    assert "the SML has no registration" in found.summary

    clock.advance((RECENT_DAYS + 1) * 86400)  # no longer looked at: its open finding is closed
    [cleared] = reconciler.run_once()
    assert (cleared.kind, cleared.status) == ("not_served", "cleared")
    assert "completed before the reconciler's window" in cleared.summary
    assert [e.detail["status"] for e in finding_events(rt, mid)] == ["open", "cleared"]
    assert reconciler.run_once() == []


def test_one_run_at_a_time_and_once_per_interval(rt, reconciler, sandbox, clock):
    party = kvk(6)
    outbound_delivered(rt, sandbox, clock, party)
    clock.advance((KEY_UNUSED_H + 1) * 3600)
    assert rt.store.start_job("reconciler", owner="other", lease_s=600, every_s=0, force=True)
    with pytest.raises(ReconcilerBusy, match="another reconciler run is under way"):
        reconciler.run_once()
    assert reconciler.run_if_due() is None
    rt.store.finish_job("reconciler", owner="other")
    assert reconciler.run_if_due() is None, "the other run has just finished: not due"
    clock.advance(reconciler.interval_s)
    assert [f.kind for f in reconciler.run_if_due() or []] == ["key_unused"]
    assert reconciler.next_due() == clock.now() + timedelta(seconds=reconciler.interval_s)
