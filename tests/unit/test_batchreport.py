"""The report builders on their own: rows, CSV, JSON and the HTML page, without a database."""

from __future__ import annotations

import csv
import io
import json
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser

import pytest

from migration_engine.backoffice import batch_report, report_html
from migration_engine.backoffice.batch_report import COLUMNS, row_dict, write_csv, write_json
from migration_engine.backoffice.report_html import chart_svg, counts_table, errors_table, state_class, write_html
from migration_engine.cli import status_view
from migration_engine.cli.import_progress import ImportProgress, count_lines
from migration_engine.machine import Direction, State, states
from migration_engine.store import BatchInfo, MigrationRecord

T0 = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
EVIL = '<script>alert("x")</script>&amp;'


def record(i: int = 1, **overrides) -> MigrationRecord:
    fields = dict(
        id=i,
        batch_id=1,
        batch_name="b",
        party_id=f"0106:{10000000 + i}",
        direction=Direction.TO_ECONNECT,
        state=State.COMPLETED,
        version=7,
        profile="default",
        name=f"Party {i}",
        new_provider=None,
        key_ciphertext="gAAAA-ciphertext-that-must-not-show",
        key_issued_at=None,
        next_run_at=None,
        attempts=0,
        lease_owner=None,
        lease_until=None,
        paused=False,
        last_error=None,
        last_error_code=None,
        failed_state=None,
        deadline_at=None,
        created_at=T0,
        updated_at=T0 + timedelta(minutes=5),
        completed_at=T0 + timedelta(minutes=5),
    )
    fields.update(overrides)
    return MigrationRecord(**fields)


def summary(**overrides) -> dict:
    by_direction = {d.value: {s.value: 0 for s in states(d)} for d in Direction}
    by_direction["to-econnect"].update(completed=3, key_rejected=1)
    by_direction["from-econnect"].update(completed=2, needs_attention=1, cancelled=1)
    data = {
        "batch": "spring",
        "total": 8,
        "completed": 5,
        "percent_done": 75.0,
        "throughput_last_hour": 5,
        "paused": 0,
        "by_direction": by_direction,
        "needs_attention": 1,
        "key_rejected": 1,
        "oldest_waiting": {"party_id": "0106:10000001", "state": "key_rejected", "since": T0.isoformat()},
        "errors_by_code": {"API400": 1, "API404": 1},
    }
    data.update(overrides)
    return data


class FakeReport:
    """What the writers use of a ``BatchReport``: the batch, the time, the summary and the rows."""

    def __init__(self, rows: list[dict], **summary_overrides) -> None:
        self.batch = BatchInfo(id=1, name="spring", created_at=T0, source="/data/spring.csv")
        self.generated_at = T0 + timedelta(hours=2)
        self.summary = summary(**summary_overrides)
        self._rows = rows

    def rows(self):
        yield from self._rows

    header = batch_report.BatchReport.header


ROWS = [
    row_dict(record(1), 0),
    row_dict(record(2, state=State.KEY_REJECTED, last_error="Migration failed", last_error_code="API400"), 2),
    row_dict(
        record(
            3,
            direction=Direction.FROM_ECONNECT,
            state=State.NEEDS_ATTENTION,
            failed_state=State.REQUESTED,
            name='=HYPERLINK("http://evil")',
            paused=True,
            completed_at=None,
        ),
        0,
    ),
    row_dict(record(4, name=EVIL, state=State.CANCELLED), 0),
]


# ---- rows --------------------------------------------------------------------------------


def test_a_row_has_every_column_and_no_key():
    row = row_dict(record(), 3)
    assert tuple(row) == COLUMNS
    assert "ciphertext" not in json.dumps(row)
    assert row["failed_tries"] == 3 and row["finished_at"] == row["updated_at"]


def test_finished_at_only_for_completed_or_cancelled():
    waiting = row_dict(record(state=State.KEY_REJECTED, completed_at=None), 0)
    assert waiting["finished_at"] is None
    assert row_dict(record(state=State.CANCELLED), 0)["finished_at"] is not None


# ---- CSV and JSON ------------------------------------------------------------------------


def test_csv_has_a_header_and_a_row_per_party_and_defuses_formulas():
    out = io.StringIO()
    assert write_csv(FakeReport(ROWS), out) == 4
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["party_id"] for r in rows] == [r["party_id"] for r in ROWS]
    assert rows[2]["name"] == '\'=HYPERLINK("http://evil")'  # a spreadsheet shows it, does not run it
    assert rows[2]["paused"] == "true" and rows[0]["paused"] == "false"
    assert rows[0]["last_error"] == "" and rows[1]["failed_tries"] == "2"


@pytest.mark.parametrize("rows", [ROWS, []])
def test_json_is_one_document_with_summary_and_parties(rows):
    out = io.StringIO()
    assert write_json(FakeReport(rows), out) == len(rows)
    data = json.loads(out.getvalue())
    assert data["batch"] == "spring" and data["source"] == "/data/spring.csv"
    assert data["summary"] == summary()
    assert data["parties"] == rows


def test_unknown_format_is_bad_input():
    from migration_engine.errors import InputError

    with pytest.raises(InputError, match="csv, json, html"):
        batch_report.write(FakeReport(ROWS), "pdf", io.StringIO())


# ---- HTML --------------------------------------------------------------------------------


class Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.figures: dict[str, str] = {}
        self.cells: dict[tuple[str, str], str] = {}
        self.bars: dict[tuple[str, str], str] = {}
        self.parties: list[str] = []
        self.text = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "dd":
            self.figures[a["id"]] = a["data-value"]
        if "data-state" in a and "data-direction" in a:
            (self.bars if tag == "rect" else self.cells)[(a["data-direction"], a["data-state"])] = a["data-value"]
        if tag == "tr" and "data-party" in a:
            self.parties.append(a["data-party"])

    def handle_data(self, data):
        self.text += data


def render(rows=ROWS, **overrides) -> tuple[str, Page]:
    out = io.StringIO()
    write_html(FakeReport(rows, **overrides), out)
    page = Page()
    page.feed(out.getvalue())
    return out.getvalue(), page


def test_html_page_is_self_contained():
    html, page = render()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert "default-src 'none'" in html
    assert not {"script", "link", "img", "iframe", "object"} & set(page.tags)
    assert "svg" in page.tags and "style" in page.tags


def test_html_figures_and_counts_carry_the_summary():
    _, page = render()
    s = summary()
    for key, _label in report_html.FIGURES:
        assert page.figures[key] == str(s[key])
    for direction, counts in s["by_direction"].items():
        for state, n in counts.items():
            assert page.cells[(direction, state)] == str(n)
            assert page.bars.get((direction, state), "0") == str(n)  # zero bars are left out
    assert page.parties == [r["party_id"] for r in ROWS]


def test_html_escapes_data_everywhere():
    html, page = render(batch="x")
    assert EVIL not in html
    assert "&lt;script&gt;" in html
    assert EVIL in page.text  # shown as text, exactly
    assert page.tags.count("script") == 0


def test_html_with_no_parties_says_so():
    empty = {d.value: {s.value: 0 for s in states(d)} for d in Direction}
    html, page = render(rows=[], total=0, completed=0, by_direction=empty, errors_by_code={}, oldest_waiting=None)
    assert "The batch has no parties." in page.text
    assert "No open migration has an error." in page.text
    assert html.count(">no parties</text>") == 2  # one per direction in the chart


def test_chart_scales_to_the_largest_count():
    svg = chart_svg({"to-econnect": {"completed": 10, "requested": 5}, "from-econnect": {"completed": 0}})
    assert 'data-state="completed" data-value="10"' in svg and 'width="520.0"' in svg
    assert 'data-state="requested" data-value="5"' in svg and 'width="260.0"' in svg


def test_state_classes_group_states_by_what_they_mean():
    assert state_class(State.COMPLETED) == "good"
    assert state_class(State.CANCELLED) == "grey"
    assert {state_class(s) for s in (State.NEEDS_ATTENTION, State.KEY_REJECTED, State.KEY_EXPIRED)} == {"bad"}
    assert state_class(State.REQUESTED) == "waiting"
    assert state_class(State.TAKEOVER_SUBMITTED) == "busy"


def test_counts_and_errors_tables():
    table = counts_table({"to-econnect": {"completed": 1}, "from-econnect": {"key_delivered": 2}})
    assert 'data-direction="to-econnect" data-state="completed" data-value="1"' in table
    assert table.count('class="n muted">-</td>') == 2  # a state the other direction does not have
    assert 'data-code="&lt;b&gt;"' in errors_table({"<b>": 1})


# ---- status on screen ------------------------------------------------------------------


def test_status_lines_show_only_states_in_use():
    lines = status_view.status_lines(summary())
    assert lines[0].startswith("batch: spring   total 8   done 75.0%")
    assert "completed=3  key_rejected=1" in lines[1] and "requested" not in lines[1]
    assert lines[-1] == "  errors: API400=1  API404=1"


class Ticks:
    """A fetch that changes once, then sets ``stop`` after a few calls (no sleeping: interval 0)."""

    def __init__(self, stop: threading.Event, calls: int) -> None:
        self.stop, self.calls, self.n = stop, calls, 0

    def __call__(self) -> dict:
        self.n += 1
        if self.n >= self.calls:
            self.stop.set()
        return summary(paused=1 if self.n >= 2 else 0)


def test_watch_off_a_terminal_prints_only_changes():
    stop, out = threading.Event(), io.StringIO()
    status_view.watch(Ticks(stop, 4), interval_s=0, tty=False, out=out, stop=stop, now=lambda: T0)
    blocks = out.getvalue().split("-- ")[1:]
    assert len(blocks) == 2  # the first status, then the one change; two repeats not printed
    assert "paused 0" in blocks[0] and "paused 1" in blocks[1]


def test_watch_on_a_terminal_draws_a_live_table():
    stop, out = threading.Event(), io.StringIO()
    status_view.watch(Ticks(stop, 3), interval_s=0, tty=True, out=out, stop=stop, now=lambda: T0)
    text = out.getvalue()
    assert "to-econnect" in text and "key_rejected" in text and "Ctrl-C" in text


# ---- import progress -------------------------------------------------------------------


def test_count_lines_counts_a_last_line_without_newline(tmp_path):
    f = tmp_path / "f.csv"
    f.write_bytes(b"h\n1\n2")
    assert count_lines(f) == 3
    f.write_bytes(b"")
    assert count_lines(f) == 0


def test_import_progress_off_a_terminal_logs_every_n_rows(tmp_path, caplog):
    f = tmp_path / "f.csv"
    f.write_text("h\n" + "r\n" * 25)
    caplog.set_level("INFO", logger="migration_engine.import")
    with ImportProgress(f, tty=False, log_every=10) as progress:
        progress.phase("checking")
        for _ in range(25):
            progress.advance(1)
        progress.phase("writing")
        progress.advance(25)
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "import checking: 10 rows",
        "import checking: 20 rows",
        "import checking: 25 rows",
        "import writing: 25 rows",
    ]
    assert {r.action for r in caplog.records} == {"import.checking", "import.writing"}


def test_import_progress_on_a_terminal_uses_the_line_count(tmp_path):
    f = tmp_path / "f.csv"
    f.write_text("h\n" + "r\n" * 5)
    with ImportProgress(f, tty=True) as progress:
        progress.phase("checking")
        progress.advance(5)
        assert progress.done == 5
        task = progress._progress.tasks[0]
        assert task.total == 5 and task.completed == 5


def test_row_dict_survives_a_record_without_batch():
    assert row_dict(replace(record(), batch_name=None, batch_id=None), 0)["party_id"] == "0106:10000001"
