"""`plan FILE` and `plan --batch NAME` against the sandbox: every class of the preflight plan,
the exit codes, the formats, and the HTML report's plan section read back from headless
Chromium, which must agree with `plan --batch --json`."""

from __future__ import annotations

import csv
import io
import json
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import ProviderConfig, SandboxConfig, SandboxServer
from migration_engine.sandbox.catalog import document_type_ids
from migration_engine.sandbox.publications import Publication
from tests.support import PROVIDER, ROOT, engine_env, kvk
from tests.support.chromium import rendered_dom
from tests.support.cli import as_json, peppol_migrate

pytestmark = pytest.mark.xdist_group("plan")

OTHER = "provider-c"
BAD_KEY = "short1"  # breaks the SML's key rule: a warning in the plan, refused by import
CARD = BusinessCardSeen(name="Ready <b>& Co</b>", country_code="NL")
DIRECTORY_CARD = BusinessCardSeen(name="Listed in the Directory", country_code="BE")


def types(*names: str) -> tuple[str, ...]:
    return document_type_ids(names)


HEADER = ["party_id", "direction", "migration_key", "profile", "name", "new_provider", "current_provider"]

# party -> (direction, where it is registered or None, what its SMP does, the class the file plan gives)
PARTIES: dict[str, tuple[str, str | None, Publication | None, str]] = {
    kvk(1): ("to-econnect", PROVIDER, Publication(types("invoices", "orders"), CARD, "smp"), "ready"),
    kvk(2): ("to-econnect", "econnect", None, "already_econnect"),
    kvk(3): ("to-econnect", None, None, "not_registered"),
    kvk(4): ("to-econnect", OTHER, None, "other_provider"),
    kvk(5): ("to-econnect", PROVIDER, Publication(smp_answer="error"), "smp_unreachable"),
    kvk(6): ("to-econnect", PROVIDER, Publication(smp_answer="missing"), "smp_inconsistent"),
    kvk(7): ("to-econnect", PROVIDER, Publication(smp_answer="garbage"), "smp_inconsistent"),
    "9912:nl000099998b57": ("to-econnect", PROVIDER, None, "scheme_deprecated"),
    "9906:it12345678901": ("to-econnect", None, None, "scheme_removed"),
    kvk(8): ("to-econnect", PROVIDER, Publication(types("despatch-advice", "invoice")), "key_suspect"),
    kvk(9): ("from-econnect", "econnect", None, "ready"),
    kvk(10): ("from-econnect", PROVIDER, None, "not_econnect"),
    kvk(11): ("to-econnect", PROVIDER, Publication(types("invoice"), DIRECTORY_CARD, "directory"), "ready"),
}
NOT_IMPORTABLE = {"9906:it12345678901", kvk(8)}  # import refuses the removed scheme and the bad key


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("plan")
    providers = (
        ProviderConfig(PROVIDER, "https://ap.provider-b.example/as4"),
        ProviderConfig(OTHER, "https://ap.provider-c.example/as4"),
    )
    with SandboxServer(SandboxConfig(providers=providers)) as sandbox:
        smp = urlsplit(sandbox.smp_url("econnect"))
        base = f"{smp.hostname}:{smp.port}/smp"
        env = engine_env(
            f"sqlite:///{folder / 'plan.db'}",
            sandbox.url,
            PEPPOL_MIGRATE_VERIFY__DNS_SERVER=sandbox.dns_address,
            PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST=f"{base}/econnect",
            PEPPOL_MIGRATE_VERIFY__TIMEOUT_S="2",
            PEPPOL_MIGRATE_NETWORK__KNOWN_SMPS=f"{base}/{PROVIDER}={PROVIDER},{base}/{OTHER}={OTHER}",
            PEPPOL_MIGRATE_NETWORK__DIRECTORY_URL=sandbox.directory_url,
            PEPPOL_MIGRATE_LOOKUPS__SMP_PER_S="200",  # the defaults (10 per SMP, 2 for the Directory) are for
            PEPPOL_MIGRATE_LOOKUPS__DIRECTORY_PER_S="50",  # the real network
            PEPPOL_MIGRATE_LOOKUPS__ATTEMPTS="1",
            PEPPOL_MIGRATE_LOOKUPS__BACKOFF_S="0",
        )
        rows, keys = [], {}
        for party, (direction, owner, publication, _) in PARTIES.items():
            if owner is not None:
                sandbox.model.register(party, owner)
            if publication is not None:
                sandbox.model.publish(party, publication)
            key, current, new = "", "", ""
            if direction == "to-econnect":
                current = PROVIDER
                if party == kvk(8):
                    key = BAD_KEY
                elif owner not in (None, "econnect"):
                    key = keys[party] = sandbox.model.provider_prepare(owner, party)
            else:
                new = PROVIDER
            rows.append([party, direction, key, "", f"Name {party}", new, current])
        everything = folder / "all.csv"
        _write(everything, rows)
        importable = folder / "importable.csv"
        _write(importable, [r for r in rows if r[0] not in NOT_IMPORTABLE])
        assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
        yield env, folder, everything, importable, keys


def _write(path, rows):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(HEADER)
        writer.writerows(rows)


def _plan_json(*args, env):
    result = peppol_migrate("plan", *args, "--json", env=env, cwd=ROOT)
    return result, json.loads(result.stdout)


def test_a_file_plan_gives_every_class_and_exits_1(world):
    env, _, everything, _, keys = world
    result, plan = _plan_json(str(everything), env=env)
    assert result.returncode == 1, result.stderr  # something blocks
    got = {p["party_id"]: p for p in plan["parties"]}
    assert {party: got[party]["class"] for party in PARTIES} == {party: v[3] for party, v in PARTIES.items()}
    assert [p["party_id"] for p in plan["parties"]] == list(PARTIES)  # the file's order
    # Each class the brief names is covered, and each blocks or warns as the docs say.
    blocking = {p["class"] for p in plan["parties"] if p["blocking"]}
    assert blocking == {
        "already_econnect", "not_registered", "other_provider", "smp_unreachable", "smp_inconsistent",
        "scheme_removed", "not_econnect",
    }
    assert not got[kvk(8)]["blocking"] and not got["9912:nl000099998b57"]["blocking"]
    summary = plan["summary"]
    assert summary["total"] == len(PARTIES) and summary["ready"] == 3
    assert summary["blocking"] == 8 and summary["warnings"] == 2
    assert sum(summary["by_class"].values()) == len(PARTIES)
    # What the SMP published, with its business card, is in the plan.
    ready = got[kvk(1)]
    assert ready["provider"] == PROVIDER and ready["lookup"] == "registered"
    assert len(ready["document_types"]) >= 3 and ready["business_card"]["name"] == CARD.name
    assert any("DespatchAdvice" in dt for dt in got[kvk(8)]["document_types"])
    assert got[kvk(11)]["business_card"]["name"] == DIRECTORY_CARD.name  # from the Directory stub
    assert got[kvk(11)]["business_card"]["source"] == "directory"
    assert "404" in json.dumps(got[kvk(6)]["findings"])
    assert got[kvk(4)]["provider"] == OTHER and PROVIDER in got[kvk(4)]["findings"][0]["why"]
    assert "0211" in got["9906:it12345678901"]["findings"][0]["why"]  # the successor is named
    assert [f["class"] for f in got[kvk(8)]["findings"]] == ["key_suspect"]
    assert plan["limits"]["dns_per_s"] > 0 and plan["limits"]["smp_per_s_per_host"] > 0
    # No key, good or bad, shows; progress went to standard error.
    for key in (*keys.values(), BAD_KEY):
        assert key not in result.stdout and key not in result.stderr
    assert "looked up" in result.stderr


def test_text_and_csv_show_the_same_plan(world):
    env, _, everything, _, _ = world
    _, plan = _plan_json(str(everything), env=env)
    text = peppol_migrate("plan", str(everything), env=env, cwd=ROOT)
    assert text.returncode == 1
    first = text.stdout.splitlines()[0]
    assert f"{len(PARTIES)} parties, 8 blocking, 2 with warnings, 3 ready" in first
    assert kvk(1) not in text.stdout  # ready parties only with --all
    assert kvk(3) in text.stdout and "to do:" in text.stdout
    assert kvk(1) in peppol_migrate("plan", str(everything), "--all", env=env, cwd=ROOT).stdout

    as_csv = peppol_migrate("plan", str(everything), "--format", "csv", env=env, cwd=ROOT)
    assert as_csv.returncode == 1
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert {r["party_id"]: r["class"] for r in rows} == {p["party_id"]: p["class"] for p in plan["parties"]}
    assert all(line.startswith('"') for line in as_csv.stdout.splitlines())


def test_nothing_blocking_exits_0_and_bad_rows_exit_2_like_import(world):
    env, folder, _, _, keys = world
    fine = folder / "fine.csv"
    inbound, outbound = [kvk(1), "to-econnect", keys[kvk(1)], "", "", "", PROVIDER], [kvk(9), "outbound", *[""] * 5]
    _write(fine, [inbound, outbound])
    result = peppol_migrate("plan", str(fine), env=env, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr

    bad = folder / "bad.csv"
    _write(bad, [[kvk(1), "sideways", "", "", "", "", ""], [kvk(9), "outbound", "", "", "", "", PROVIDER]])
    planned = peppol_migrate("plan", str(bad), env=env, cwd=ROOT)
    imported = peppol_migrate("import", str(bad), "--dry-run", env=env, cwd=ROOT)
    assert planned.returncode == imported.returncode == 2
    assert "line 2, column direction" in planned.stderr and "line 3, column current_provider" in planned.stderr
    problems = [line for line in planned.stderr.splitlines() if line.startswith("  line ")]
    assert len(problems) == 2  # the same problems, in the same words, as import's
    assert problems == [line for line in imported.stderr.splitlines() if line.startswith("  line ")]
    assert planned.stdout == ""
    missing = peppol_migrate("plan", "--batch", "no such batch", env=env, cwd=ROOT)
    assert missing.returncode == 2 and "no batch named" in missing.stderr


class PlanSection(HTMLParser):
    """The plan section's figures, counts per class and class per party, as rendered."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, int] = {}
        self.classes: dict[str, int] = {}
        self.parties: dict[str, tuple[str, str]] = {}
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        if tag == "dd" and str(a.get("id", "")).startswith("plan-"):
            self.figures[a["id"].removeprefix("plan-")] = int(a["data-value"])
        if tag == "td" and "data-class" in a:
            self.classes[a["data-class"]] = int(a["data-value"])
        if tag == "tr" and "data-plan-party" in a:
            self.parties[a["data-plan-party"]] = (a["data-class"], a["data-blocking"])


def test_the_batch_plan_json_and_the_html_report_section_agree(world, tmp_path):
    env, _, _, importable, _ = world
    assert peppol_migrate("import", str(importable), "--batch", "spring", env=env, cwd=ROOT).returncode == 0
    result, plan = _plan_json("--batch", "spring", env=env)
    assert result.returncode == 1, result.stderr
    assert plan["batch"] == "spring" and plan["summary"]["total"] == len(PARTIES) - len(NOT_IMPORTABLE)
    # current_provider is stored with the migration: the batch plan finds the wrong provider too.
    expected = {p: v[3] for p, v in PARTIES.items() if p not in NOT_IMPORTABLE}
    assert expected[kvk(4)] == "other_provider"
    assert {p["party_id"]: p["class"] for p in plan["parties"]} == expected

    page = tmp_path / "report.html"
    written = peppol_migrate(
        "report", "--batch", "spring", "--format", "html", "--plan", "--out", str(page), env=env, cwd=ROOT
    )
    assert written.returncode == 0, written.stderr
    assert "<script" not in page.read_text(encoding="utf-8")
    dom = PlanSection()
    dom.feed(rendered_dom(page, tmp_path / "chromium"))
    summary = plan["summary"]
    assert dom.figures == {k: summary[k] for k in ("total", "blocking", "warnings", "ready")}
    assert dom.classes == summary["by_class"]
    assert dom.parties == {
        p["party_id"]: (p["class"], "true" if p["blocking"] else "false") for p in plan["parties"]
    }
    assert "b" not in dom.tags  # the business card's markup stayed text

    refused = peppol_migrate("report", "--batch", "spring", "--format", "csv", "--plan", env=env, cwd=ROOT)
    assert refused.returncode == 2 and "--plan goes with --format html" in refused.stderr
    status = as_json(peppol_migrate("status", "--batch", "spring", "--json", env=env, cwd=ROOT))
    assert status["total"] == plan["summary"]["total"]
