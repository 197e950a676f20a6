"""`report --batch NAME` as CSV, JSON and HTML, checked against `status --json`.

The HTML page is opened in headless Chromium (installed by ``scripts/ensure-chromium.sh``,
which `make test` runs): the numbers in the DOM Chromium rendered must be the numbers of
`status --json`, the page must load nothing from outside, and a party name full of markup
must come out as text. Without Chromium the test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
from html.parser import HTMLParser

import pytest

from migration_engine.sandbox import SandboxConfig, SandboxServer
from tests.support import PROVIDER, ROOT, engine_env, kvk, seed_batch
from tests.support.chromium import rendered_dom
from tests.support.cli import BIN, as_json, peppol_migrate

BATCH = "spring <b>&amp; 'co'"  # markup in a batch name must stay text
EVIL_NAME = '<script>document.title="owned"</script><img src=x onerror=alert(1)>'


# One worker runs this module's tests, so the batch is built and run once.
pytestmark = pytest.mark.xdist_group("report_html")


@pytest.fixture(scope="module")
def finished_batch(tmp_path_factory):
    """A batch run to the end with every kind of outcome; returns (env, folder)."""
    folder = tmp_path_factory.mktemp("report")
    with SandboxServer(SandboxConfig()) as sandbox:
        env = engine_env(
            f"sqlite:///{folder / 'report.db'}",
            sandbox.url,
            PEPPOL_MIGRATE_TAKEOVER__POLL_S="0.2",
            PEPPOL_MIGRATE_TAKEOVER__POLL_MAX_S="0.4",
            PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S="0.05",
        )
        inbound, outbound = [kvk(300 + i) for i in range(5)], [kvk(350 + i) for i in range(4)]
        batch = folder / "batch.csv"
        wrong, no_key = [inbound[0]], [inbound[1]]
        seed_batch(sandbox.model, batch, inbound=inbound, outbound=outbound, wrong_keys=wrong, no_key=no_key)
        with batch.open("a", encoding="utf-8", newline="") as fh:
            csv.writer(fh).writerow([kvk(399), "from-econnect", "", "", EVIL_NAME, PROVIDER])  # unknown at eConnect
        assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
        assert peppol_migrate("import", str(batch), "--batch", BATCH, env=env, cwd=ROOT).returncode == 0
        assert peppol_migrate("cancel", inbound[2], env=env, cwd=ROOT).returncode == 0
        assert peppol_migrate("pause", inbound[1], env=env, cwd=ROOT).returncode == 0
        run = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=120)
        assert run.returncode == 0, run.stderr
    return env, folder


def status_of(env) -> dict:
    return as_json(peppol_migrate("status", "--batch", BATCH, "--json", env=env, cwd=ROOT))


class Figures(HTMLParser):
    """Reads the numbers back out of a rendered page: figures by id, counts, bars, party rows."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.cells: dict[tuple[str, str], int] = {}
        self.bars: dict[tuple[str, str], int] = {}
        self.parties: dict[str, str] = {}
        self.tags: set[str] = set()
        self.external: list[str] = []
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.add(tag)
        self._in_title = tag == "title" and not self.title
        for name in ("src", "href"):
            if a.get(name):
                self.external.append(f"{tag} {name}={a[name]}")
        if tag == "dd" and "data-value" in a:
            self.figures[a["id"]] = a["data-value"]
        if "data-direction" in a and "data-state" in a:
            target = self.bars if tag == "rect" else self.cells
            target[(a["data-direction"], a["data-state"])] = int(a["data-value"])
        if tag == "tr" and "data-party" in a:
            self.parties[a["data-party"]] = a["data-state"]

    def handle_data(self, data):
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False


def test_html_report_in_chromium_matches_status(finished_batch, tmp_path):
    env, _ = finished_batch
    page = tmp_path / "report.html"
    written = peppol_migrate("report", "--batch", BATCH, "--format", "html", "--out", str(page), env=env, cwd=ROOT)
    assert written.returncode == 0, written.stderr
    status = status_of(env)
    html = page.read_text(encoding="utf-8")
    for outside in ("<script", "<link", "<img", "url(", "@import"):
        assert outside not in html, outside
    source = Figures()
    source.feed(html)
    assert not source.external and source.figures  # no src= or href= anywhere

    rendered = rendered_dom(page, tmp_path / "chromium")
    dom = Figures()
    dom.feed(rendered)

    assert dom.title.startswith("Migration report: batch ") and BATCH in dom.title
    for key in ("total", "completed", "needs_attention", "key_rejected", "paused", "throughput_last_hour"):
        assert int(dom.figures[key]) == status[key], key
    assert float(dom.figures["percent_done"]) == status["percent_done"]
    for direction, counts in status["by_direction"].items():
        for state, n in counts.items():
            assert dom.cells[(direction, state)] == n, (direction, state)
            assert dom.bars.get((direction, state), 0) == n, (direction, state)
    assert len(dom.parties) == status["total"]
    assert sum(1 for s in dom.parties.values() if s == "completed") == status["completed"]
    # Markup in data is text: no script or image element came out of the party's name.
    assert "script" not in dom.tags and "img" not in dom.tags
    assert "&lt;script&gt;" in rendered
    assert not dom.external


def test_csv_and_json_reports_have_a_row_per_party(finished_batch, tmp_path):
    env, _ = finished_batch
    status = status_of(env)

    as_csv = peppol_migrate("report", "--batch", BATCH, env=env, cwd=ROOT)
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == status["total"] == 10
    by_state: dict[tuple[str, str], int] = {}
    for row in rows:
        by_state[(row["direction"], row["state"])] = by_state.get((row["direction"], row["state"]), 0) + 1
    for direction, counts in status["by_direction"].items():
        for state, n in counts.items():
            assert by_state.get((direction, state), 0) == n
    rejected = next(r for r in rows if r["state"] == "key_rejected")
    assert rejected["last_error"] and rejected["last_error_code"]
    attention = next(r for r in rows if r["state"] == "needs_attention")
    assert attention["failed_state"] == "requested" and attention["name"] == EVIL_NAME
    cancelled = next(r for r in rows if r["state"] == "cancelled")
    assert cancelled["finished_at"]
    assert all(r["created_at"] for r in rows)
    assert {r["paused"] for r in rows} == {"true", "false"}

    out = tmp_path / "report.json"
    out.write_text("an older, world-readable report", encoding="utf-8")
    out.chmod(0o644)
    written = peppol_migrate("report", "--batch", BATCH, "--format", "json", "--out", str(out), env=env, cwd=ROOT)
    assert written.returncode == 0 and "10 parties" in written.stderr
    assert out.stat().st_mode & 0o777 == 0o600  # a report names every party: owner only, even when overwritten
    data = json.loads(out.read_text(encoding="utf-8"))
    assert data["batch"] == BATCH and data["summary"] == {k: v for k, v in status.items() if k != "workers"}
    assert [p["party_id"] for p in data["parties"]] == [r["party_id"] for r in rows]
    assert {p["state"] for p in data["parties"]} == {r["state"] for r in rows}

    missing = peppol_migrate("report", "--batch", "no such batch", env=env, cwd=ROOT)
    assert missing.returncode == 2 and "no batch named" in missing.stderr


def test_status_watch_refreshes_until_interrupted(finished_batch):
    """`status --watch` off a terminal prints the status, then again only when it changes."""
    env, _ = finished_batch
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")} | env
    proc = subprocess.Popen(
        [str(BIN), "status", "--batch", BATCH, "--watch", "--interval", "0.1"],
        env=full_env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = [proc.stdout.readline() for _ in range(2)]
        assert first[0].startswith("-- ") and f"batch: {BATCH}" in first[1]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not [line for line in out.splitlines() if line.startswith("-- ")]  # unchanged: not printed again
