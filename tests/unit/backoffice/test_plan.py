"""The preflight plan's classification, from ``PartySnapshot`` objects, and its formats."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from migration_engine.backoffice import plan_classes
from migration_engine.backoffice.batch_file import validate_file
from migration_engine.backoffice.plan import Plan, PlanRow, classify, file_rows, scheme_findings, take
from migration_engine.backoffice.plan_formats import CSV_COLUMNS, html_section, text_lines, write_csv, write_json
from migration_engine.errors import NetworkLookupError
from migration_engine.machine import Direction
from migration_engine.peppol import snapshot as snap
from migration_engine.peppol.snapshot import BusinessCardSeen, PartySnapshot, ServiceSeen

ECONNECT = "127.0.0.1:9000/smp/econnect"
OTHER = "http://127.0.0.1:9000/smp/provider-b"
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
TODAY = AT.date()
INVOICE = "urn:oasis:names:specification:ubl:schema:xsd:Invoice-2::Invoice##x::2.1"
PARTY = "0106:12345678"
IN, OUT = Direction.TO_ECONNECT, Direction.FROM_ECONNECT


def snapshot(lookup: str = snap.REGISTERED, *, smp: str | None = OTHER, provider: str | None = "provider-b", **kw):
    services = kw.pop("services", (ServiceSeen(INVOICE, ("p",), ("peppol-transport-as4-v2_0",)),))
    return PartySnapshot(
        kw.pop("party_id", PARTY),
        AT,
        lookup,
        smp_url=smp,
        smp_host="127.0.0.1:9000" if smp else None,
        provider=provider,
        services=services if lookup == snap.REGISTERED else (),
        **kw,
    )


def plan_of(row: PlanRow, s: PartySnapshot | None, *, today: date = TODAY, warn_days: int = 90):
    return classify(row, s, econnect_smp=ECONNECT, today=today, warn_days=warn_days)


def test_registered_elsewhere_with_an_answering_smp_is_ready():
    planned = plan_of(PlanRow(PARTY, IN, current_provider="Provider-B"), snapshot())
    assert planned.klass == "ready" and not planned.blocking and planned.findings == ()
    assert planned.action == "nothing to do"


@pytest.mark.parametrize(
    ("row", "s", "klass"),
    [
        (PlanRow(PARTY, IN), snapshot(snap.NOT_REGISTERED, smp=None, provider=None), "not_registered"),
        (PlanRow(PARTY, IN), snapshot(smp=f"http://{ECONNECT}", provider="eConnect"), "already_econnect"),
        (PlanRow(PARTY, IN), snapshot(smp="https://smp.elsewhere.example/x", econnect=True), "already_econnect"),
        (PlanRow(PARTY, IN, current_provider="provider-c"), snapshot(), "other_provider"),
        (PlanRow(PARTY, IN), snapshot(snap.SMP_MISSING), "smp_inconsistent"),
        (PlanRow(PARTY, IN), snapshot(snap.SMP_GARBAGE, problems=("not XML",)), "smp_inconsistent"),
        (PlanRow(PARTY, IN), snapshot(snap.TECHNICAL_FAILURE, problems=("SMP: HTTP 503",)), "smp_unreachable"),
        (PlanRow(PARTY, IN), snapshot(snap.TECHNICAL_FAILURE, smp=None, provider=None), "smp_unreachable"),
        (PlanRow(PARTY, OUT), snapshot(), "not_econnect"),
        (PlanRow(PARTY, OUT), snapshot(snap.NOT_REGISTERED, smp=None, provider=None), "not_econnect"),
        (PlanRow(PARTY, OUT), snapshot(snap.SMP_MISSING, smp="http://127.0.0.1:9000/smp/econnect"), "smp_inconsistent"),
    ],
)
def test_each_network_answer_gets_its_blocking_class(row, s, klass):
    planned = plan_of(row, s)
    assert planned.klass == klass
    assert planned.blocking and klass in plan_classes.BLOCKING
    assert planned.findings[0].klass == klass and planned.findings[0].why


def test_outbound_party_served_by_econnect_is_ready():
    s = snapshot(smp="http://127.0.0.1:9000/smp/econnect", provider="eConnect", econnect=True)
    assert plan_of(PlanRow(PARTY, OUT, new_provider="provider-b"), s).klass == "ready"


def test_an_unknown_smp_host_cannot_contradict_the_file_and_says_so():
    planned = plan_of(PlanRow(PARTY, IN, current_provider="provider-b"), snapshot(provider=None))
    assert planned.klass == "ready"
    assert planned.notes and "not checked" in planned.notes[0]


def test_the_worst_finding_decides_and_all_are_kept():
    row = PlanRow("9912:nl123", IN, key_problem="the migration key contains white space")
    planned = plan_of(row, snapshot(snap.SMP_MISSING, party_id="9912:nl123"))
    assert [f.klass for f in planned.findings] == ["smp_inconsistent", "scheme_deprecated", "key_suspect"]
    assert planned.klass == "smp_inconsistent" and planned.blocking


@pytest.mark.parametrize(
    ("party", "today", "klass"),
    [
        ("9906:it12345678901", date(2023, 6, 1), "scheme_removed"),  # removed 2023-05-24: past
        ("9906:it12345678901", date(2023, 5, 1), "scheme_deprecated"),  # 23 days ahead: within 90
        ("0205:abc", TODAY, "scheme_removed"),  # unregistrable
        ("9912:nl123", TODAY, "scheme_deprecated"),  # deprecated, no date
        ("0106:1234", TODAY, "id_suspect"),  # a KvK number is 8 digits
    ],
)
def test_scheme_findings_follow_the_code_list_and_the_day(party, today, klass):
    found = scheme_findings(party, today=today, warn_days=90)
    assert [f.klass for f in found] == [klass]
    planned = plan_of(PlanRow(party, IN), snapshot(party_id=party), today=today)
    assert planned.klass == klass
    assert planned.blocking is (klass in plan_classes.BLOCKING)


def test_a_removal_beyond_the_warning_window_is_no_finding_yet():
    assert scheme_findings("9906:it12345678901", today=date(2023, 1, 1), warn_days=90) == []
    assert [f.klass for f in scheme_findings("9906:it12345678901", today=date(2023, 1, 1), warn_days=200)] == [
        "scheme_deprecated"
    ]


def test_a_removed_scheme_names_its_successor():
    (found,) = scheme_findings("9906:it12345678901", today=TODAY)
    assert "0211" in found.why and "2023-05-24" in found.why


def test_key_suspect_is_a_warning_and_never_shows_the_key():
    planned = plan_of(PlanRow(PARTY, IN, key_problem="the migration key has 5 characters"), snapshot())
    assert planned.klass == "key_suspect" and not planned.blocking


def test_take_keeps_the_order_uses_known_snapshots_and_survives_lookup_errors():
    asked: list[str] = []

    def lookup(party_id: str) -> PartySnapshot:
        asked.append(party_id)
        if party_id.endswith("3"):
            raise NetworkLookupError("DNS down", code="DNS")
        return snapshot(party_id=party_id)

    rows = [PlanRow(f"0106:1000000{i}", IN) for i in range(6)]
    known = {rows[0].party_id: snapshot(snap.NOT_REGISTERED, smp=None, provider=None, party_id=rows[0].party_id)}
    done: list[int] = []
    planned = take(rows, lookup, econnect_smp=ECONNECT, now=lambda: AT, concurrency=3, known=known, on_done=done.append)
    assert [p.row.party_id for p in planned] == [r.party_id for r in rows]
    assert rows[0].party_id not in asked and len(asked) == 5
    assert [p.klass for p in planned] == ["not_registered", "ready", "ready", "smp_unreachable", "ready", "ready"]
    assert "DNS down" in planned[3].findings[0].why
    assert sum(done) == 6


def _plan(parties) -> Plan:
    return Plan({"batch": "b"}, AT, parties, {"dns_per_s": 50.0}, 90)


def test_summary_json_csv_text_and_html_agree():
    card = BusinessCardSeen(name="=HYPERLINK(\"x\")", country_code="NL", source="smp")
    parties = [
        plan_of(PlanRow(PARTY, IN), snapshot(business_card=card)),
        plan_of(PlanRow("0106:12345679", IN), snapshot(snap.NOT_REGISTERED, smp=None, provider=None)),
        plan_of(PlanRow("9912:nl1", IN, key_problem="bad"), snapshot()),
    ]
    plan = _plan(parties)
    s = plan.summary()
    assert (s["total"], s["blocking"], s["warnings"], s["ready"]) == (3, 1, 1, 1)
    assert s["by_class"] == {"not_registered": 1, "scheme_deprecated": 1, "ready": 1}
    assert plan.blocks

    out = io.StringIO()
    write_json(plan, out)
    data = json.loads(out.getvalue())
    assert data["summary"] == s and [p["class"] for p in data["parties"]] == [p.klass for p in parties]
    assert data["parties"][0]["business_card"]["name"] == card.name
    assert data["classes"]["not_registered"]["blocking"] is True

    out = io.StringIO()
    write_csv(plan, out)
    lines = out.getvalue().splitlines()
    assert all(line.count('"') >= 2 * len(CSV_COLUMNS) for line in lines)  # every field quoted
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["class"] for r in rows] == [p.klass for p in parties]
    assert rows[0]["business_card_name"].startswith("'=")  # a formula is defused

    text = text_lines(plan)
    assert text[0].startswith("plan of batch b") and "1 blocking" in text[0]
    assert not any(PARTY in line for line in text)  # ready parties only with --all
    assert any(PARTY in line for line in text_lines(plan, show_all=True))

    html = html_section(plan)
    assert 'id="plan-blocking" data-value="1"' in html
    assert html.count("data-plan-party=") == 3 and 'data-class="not_registered"' in html
    assert "=HYPERLINK(&quot;x&quot;)" in html  # escaped


def test_a_file_is_read_leniently_for_the_plan_and_strictly_for_import(tmp_path: Path):
    path = tmp_path / "batch.csv"
    path.write_text(
        "party_id,direction,migration_key,current_provider\n"
        "9906:IT12345678901,to-econnect,short,provider-b\n"
        "0106:12345678,from-econnect,,\n",
        encoding="utf-8",
    )
    strict = validate_file(path)
    assert {(p.line, p.column) for p in strict.problems} == {(2, "party_id"), (2, "migration_key")}
    assert validate_file(path, strict=False).ok
    rows = list(file_rows(path, default_profile=None))
    assert rows[0].party_id == "9906:it12345678901" and rows[0].current_provider == "provider-b"
    assert rows[0].key_problem and "short" not in rows[0].key_problem
    assert rows[1].key_problem is None and rows[1].direction is OUT


def test_current_provider_belongs_to_inbound_rows(tmp_path: Path):
    path = tmp_path / "batch.csv"
    path.write_text(
        "party_id,direction,current_provider\n0106:12345678,from-econnect,provider-b\n0106:12345679,inbound,a/b\n",
        encoding="utf-8",
    )
    problems = validate_file(path).problems
    assert [(p.line, p.column) for p in problems] == [(2, "current_provider"), (3, "current_provider")]
    assert "to-econnect rows only" in problems[0].why
