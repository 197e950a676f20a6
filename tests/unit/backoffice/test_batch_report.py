"""The batch report's rows, CSV and JSON, and the choice of format."""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import replace

import pytest

from migration_engine.backoffice import report_formats
from migration_engine.backoffice.batch_report import COLUMNS, PARITY_COLUMNS, row_dict, write_csv, write_json
from migration_engine.backoffice.report_html import write_html
from migration_engine.machine import State
from tests.support.reports import ROWS, FakeReport, record, summary

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


def csv_of(**fields: str) -> tuple[str, dict[str, str]]:
    """The CSV text of a report with one row whose ``fields`` are replaced, and that row read back."""
    out = io.StringIO()
    write_csv(FakeReport([ROWS[0] | fields]), out)
    [row] = list(csv.DictReader(io.StringIO(out.getvalue())))
    return out.getvalue(), row


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ('Acme;=HYPERLINK("http://evil")', 'Acme;\'=HYPERLINK("http://evil")'),  # split at ; in NL/DE
        ("Acme,+1", "Acme,'+1"),
        ("Acme\t-1", "Acme\t'-1"),
        ("\t=1", "'\t'=1"),  # a leading tab is a starter, and a separator before the =, too
        ("Acme; @SUM(A1)", "Acme; '@SUM(A1)"),  # spaces after the separator change nothing
        ("=1+2", "'=1+2"),
        ("Acme-Beta B.V.; since 2020", "Acme-Beta B.V.; since 2020"),  # nothing to defuse
    ],
)
def test_csv_defuses_formulas_after_any_separator_in_any_column(text, shown):
    for column in ("name", "last_error", "new_provider", "profile"):
        raw, row = csv_of(**{column: text})
        assert row[column] == shown, column
        for piece in re.split(r"[,;\t]", raw):  # however a spreadsheet splits the line
            assert not piece.strip(' "').startswith(("=", "+", "-", "@")), (column, piece)


def test_csv_quotes_every_field():
    raw, row = csv_of(name="Acme", last_error_code="API400")
    header, line = raw.splitlines()
    assert header.startswith('"party_id","name",')
    assert line.startswith(f'"{ROWS[0]["party_id"]}","Acme",') and '"API400"' in line
    assert line.count('"') == 2 * len(COLUMNS)  # every field quoted, empty ones too
    assert row["last_error_code"] == "API400"


@pytest.mark.parametrize("rows", [ROWS, []])
def test_json_is_one_document_with_summary_and_parties(rows):
    out = io.StringIO()
    assert write_json(FakeReport(rows), out) == len(rows)
    data = json.loads(out.getvalue())
    assert data["batch"] == "spring" and data["source"] == "spring.csv"  # the file, not the operator's folders
    assert "/data" not in out.getvalue()
    assert data["summary"] == summary()
    assert data["parties"] == rows


@pytest.mark.parametrize(("fmt", "writer"), [("csv", write_csv), ("json", write_json), ("html", write_html)])
def test_each_format_has_its_writer(fmt, writer):
    chosen, direct = io.StringIO(), io.StringIO()
    assert report_formats.write(FakeReport(ROWS), fmt, chosen) == writer(FakeReport(ROWS), direct) == len(ROWS)
    assert chosen.getvalue() == direct.getvalue()


def test_unknown_format_is_bad_input():
    from migration_engine.errors import InputError

    with pytest.raises(InputError, match="csv, json, html"):
        report_formats.write(FakeReport(ROWS), "pdf", io.StringIO())


def test_a_row_is_the_migration_as_show_prints_it():
    from migration_engine.backoffice.overview import migration_dict

    rec = record(3, state=State.NEEDS_ATTENTION, failed_state=State.KEY_ISSUED, completed_at=None, attempts=2)
    shown, row = migration_dict(rec), row_dict(rec, 5)
    assert {k: v for k, v in row.items() if k in shown} == {k: shown[k] for k in COLUMNS if k in shown}
    assert set(row) - set(shown) == {"finished_at", "failed_tries", *PARITY_COLUMNS}
    assert all(row[c] is None for c in PARITY_COLUMNS)  # no parity recorded
    assert row["failed_state"] == "key_issued" and row["attempts"] == 2 and row["failed_tries"] == 5


def test_row_dict_survives_a_record_without_batch():
    assert row_dict(replace(record(), batch_name=None, batch_id=None), 0)["party_id"] == "0106:10000001"
