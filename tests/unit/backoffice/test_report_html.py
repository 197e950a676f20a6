"""The HTML report page: self-contained, escaped, its figures, chart and tables."""

from __future__ import annotations

import io
from html.parser import HTMLParser

from migration_engine.backoffice import report_html
from migration_engine.backoffice.report_html import chart_svg, counts_table, errors_table, state_class, write_html
from migration_engine.machine import Direction, State, states
from tests.support.reports import EVIL, ROWS, FakeReport, summary

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


def test_html_names_the_source_file_but_not_its_folders():
    """The batch came from /data/spring.csv on the operator's machine; the page says spring.csv."""
    html, page = render()
    assert "Imported " in page.text and " from spring.csv;" in page.text
    assert "/data" not in html


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
