"""Receive parity as a user runs it: 100 inbound parties whose old providers publish eight
different document type mixes (two with a type no eConnect capability covers) migrate with the
installed CLI, ``verify.peppol_network`` on and ``parity.inbound = require``.

Afterwards each party is either served by eConnect's SMP for every type it received before
(completed), or held in needs_attention with the exact list of what is missing; the enrollment
carries each party's business card (the sandbox PSB's stored card), with the batch row's name
and the profile's email winning over the network's; `show` and the batch report say so.
"""

from __future__ import annotations

import csv
import json
from typing import Literal

import pytest

from migration_engine.machine import State
from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import SandboxConfig, SandboxServer, catalog
from migration_engine.sandbox.publications import Publication
from tests.support import PROVIDER, ROOT, engine_env, kvk
from tests.support.cli import as_json, peppol_migrate

D = catalog.DOCUMENT_TYPES
# name -> the old provider's document types (short names of the sandbox catalog)
MIXES: dict[str, tuple[str, ...]] = {
    "invoice": ("invoice",),
    "billing": ("invoice", "credit-note"),
    "billing+imr": ("invoice", "credit-note", "invoice-response"),
    "ordering": ("invoice", "order", "order-response"),
    "cii+mlr": ("cii", "mlr"),
    "order-only": ("invoice", "order-only"),
    "despatch": ("invoice", "despatch-advice"),  # no capability covers despatch advice
    "catalogue": ("credit-note", "catalogue", "invoice-response"),  # nor catalogues
}
UNCOVERED = {D["despatch-advice"].document_type_id, D["catalogue"].document_type_id}
PARTIES = 100
PROFILE = """
[capabilities]
invoices = "on"
invoiceResponse = "off"

[business_card]
email = "peppol-ops@example.com"
"""


def mix_of(i: int) -> str:
    return list(MIXES)[i % len(MIXES)]


def card_of(i: int) -> BusinessCardSeen:
    country = ("BE", "NL", "DE")[i % 3]
    email = f"x{i}@old.example"
    return BusinessCardSeen(name=f"Old Name {i}", country_code=country, geo_info=f"Street {i}", email=email)


@pytest.fixture
def sandbox():
    with SandboxServer(SandboxConfig()) as server:
        yield server


def test_a_hundred_parties_are_served_for_every_type_they_received_or_held_with_the_gap(tmp_path, sandbox):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "parity.toml").write_text(PROFILE, encoding="utf-8")
    env = engine_env(
        f"sqlite:///{tmp_path / 'parity.db'}",
        sandbox.url,
        PEPPOL_MIGRATE_PROFILES__DIR=str(profiles),
        PEPPOL_MIGRATE_VERIFY__PEPPOL_NETWORK="true",
        PEPPOL_MIGRATE_VERIFY__DNS_SERVER=sandbox.dns_address,
        PEPPOL_MIGRATE_VERIFY__SML_ZONE=sandbox.model.config.sml_zone,
        PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST=sandbox.smp_url("econnect"),
        PEPPOL_MIGRATE_NETWORK__DIRECTORY_URL=sandbox.directory_url,
        PEPPOL_MIGRATE_LOOKUPS__SMP_PER_S="0",
        PEPPOL_MIGRATE_LOOKUPS__DNS_PER_S="0",
        PEPPOL_MIGRATE_LOOKUPS__DIRECTORY_PER_S="0",
        PEPPOL_MIGRATE_PARITY__INBOUND="require",
        PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
        PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.5",
        PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
        PEPPOL_MIGRATE_WORKER__CONCURRENCY="16",
    )
    parties = [kvk(1000 + i) for i in range(PARTIES)]
    received: dict[str, tuple[str, ...]] = {}
    with (tmp_path / "batch.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "migration_key", "profile", "name"])
        for i, party in enumerate(parties):
            received[party] = catalog.document_type_ids(list(MIXES[mix_of(i)]))
            sandbox.model.register(party, PROVIDER)
            # The card at the old SMP, or only in the Directory.
            where: Literal["smp", "directory"] = "smp" if i % 2 == 0 else "directory"
            sandbox.model.publish(
                party, Publication(document_types=received[party], business_card=card_of(i), card_at=where)
            )
            key = sandbox.model.provider_prepare(PROVIDER, party)
            writer.writerow([party, "to-econnect", key, "parity", f"Row Name {i}" if i % 4 == 0 else ""])

    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    imported = peppol_migrate("import", str(tmp_path / "batch.csv"), "--batch", "parity", env=env, cwd=ROOT)
    assert imported.returncode == 0, imported.stderr
    run = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=300)
    assert run.returncode == 0, run.stderr

    held = served = 0
    for i, party in enumerate(parties):
        before = received[party]
        missing = [dt for dt in before if dt in UNCOVERED]
        shown = as_json(peppol_migrate("show", party, "--json", env=env, cwd=ROOT)) if i % 10 == 0 else None
        config = sandbox.model.psb_get_config(party)
        offered = {dt.document_type_id for dt in sandbox.model.econnect.offered(party)}
        if missing:
            held += 1
            assert sandbox.model.owner(party) == "econnect"
            assert set(before) - offered == set(missing), mix_of(i)
        else:
            served += 1
            assert set(before) <= offered, f"{party} ({mix_of(i)}) is not served for {set(before) - offered}"
        # The enrollment carried the card: the row's name wins, the profile's email wins, the rest carried.
        card = config["businessCard"]
        own = card_of(i)
        assert card["names"]["value"] == (f"Row Name {i}" if i % 4 == 0 else own.name)
        assert card["countryCode"]["value"] == own.country_code
        assert card["address"]["value"] == own.geo_info
        assert card["emailAddress"]["value"] == "peppol-ops@example.com"
        if shown is not None:
            migration = shown["migrations"][0]
            assert migration["snapshot"]["lookup"] == "registered"
            assert [s["document_type"] for s in migration["snapshot"]["services"]] == list(before)
            if missing:
                assert migration["state"] == State.NEEDS_ATTENTION.value
                assert migration["last_error_code"] == "PARITY"
                assert migration["last_error"].endswith(": " + "; ".join(missing))
                [hold] = [e for e in migration["events"] if e.get("to_state") == "needs_attention"]
                assert hold["detail"]["parity"]["missing"] == missing
            else:
                assert migration["state"] == State.COMPLETED.value
    assert held == sum(1 for i in range(PARTIES) if set(MIXES[mix_of(i)]) & {"despatch-advice", "catalogue"})
    assert held and served and held + served == PARTIES

    status = as_json(peppol_migrate("status", "--batch", "parity", "--json", env=env, cwd=ROOT))
    counts = {state: n for state, n in status["by_direction"]["to-econnect"].items() if n}
    assert counts == {"completed": served, "needs_attention": held}

    report = peppol_migrate("report", "--batch", "parity", "--format", "json", env=env, cwd=ROOT)
    assert report.returncode == 0, report.stderr
    rows = {row["party_id"]: row for row in json.loads(report.stdout)["parties"]}
    for i, party in enumerate(parties):
        row, before = rows[party], received[party]
        missing = [dt for dt in before if dt in UNCOVERED]
        assert (row["missing_types"] or "").split() == missing
        assert set((row["uncovered_types"] or "").split()) >= set(missing)
        carried = {"countryCode", "geoInfo"} | ({"names"} if i % 4 else set())
        assert set((row["card_carried"] or "").split()) == carried
        # The profile has invoices only: parity turned on what else the party received.
        added = set((row["parity_added"] or "").split())
        mix = MIXES[mix_of(i)]
        # The sandbox's SMP lists the Order id under both its processes (ordering, order only),
        # so either mix needs both capabilities.
        ordered = "order" in mix or "order-only" in mix
        assert ("orders" in added) == ordered and ("orderOnly" in added) == ordered
        assert ("invoiceResponse" in added) == ("invoice-response" in mix)
        assert ("reviews" in added) == ("mlr" in mix)
