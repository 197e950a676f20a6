"""`report --format html`: one self-contained page a service desk can send to a customer.

Inline CSS, an inline SVG bar chart of the states per direction, the summary figures, the
errors by code and the per-party table. No script, no font, no image, no link: a
Content-Security-Policy of ``default-src 'none'`` makes the browser refuse anything external,
so the page looks the same offline, in a mail attachment or in a ticket system.

Every value that comes from data (names, error texts, batch and file names) goes through
``html.escape`` before it reaches the page, in text and in attributes alike.

The figures carry ``data-value`` attributes (and the count table ``data-direction`` /
``data-state``), so a test can read the rendered numbers back and compare them with
`status --json`.
"""

from __future__ import annotations

from collections.abc import Iterator
from html import escape
from typing import IO, TYPE_CHECKING, Any

from migration_engine.backoffice.batch_report import BatchReport
from migration_engine.machine import Direction, State, states

if TYPE_CHECKING:
    from migration_engine.backoffice.plan import Plan

# (summary key, label): the figures shown at the top, all numbers of `status --json`.
FIGURES = (
    ("total", "parties"),
    ("completed", "completed"),
    ("percent_done", "done (completed or cancelled)"),
    ("needs_attention", "need attention"),
    ("key_rejected", "keys rejected"),
    ("paused", "paused"),
    ("throughput_last_hour", "completed in the last hour"),
)
_GOOD = {State.COMPLETED}
_GREY = {State.CANCELLED}
_BAD = {State.NEEDS_ATTENTION, State.KEY_REJECTED, State.KEY_EXPIRED}
_WAITING = {State.REQUESTED}
COLOURS = {"good": "#2e7d32", "grey": "#9e9e9e", "bad": "#c62828", "waiting": "#90caf9", "busy": "#1565c0"}
DIRECTION_TITLES = {Direction.TO_ECONNECT: "to eConnect (inbound)", Direction.FROM_ECONNECT: "from eConnect (outbound)"}

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1c1c1c;margin:0;background:#f6f7f9}
main{max-width:1200px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.meta{color:#555;margin:0}
.figures{display:flex;flex-wrap:wrap;gap:12px;margin:18px 0 0;padding:0}
.figures div{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 14px;min-width:120px}
.figures dt{color:#555;font-size:12px}.figures dd{margin:0;font-size:22px;font-weight:600}
.panel{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:14px;overflow-x:auto}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e6e8eb;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600;position:sticky;top:0}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.state{display:inline-block;padding:1px 7px;border-radius:9px;color:#fff;font-size:12px;white-space:nowrap}
.good{background:#2e7d32}.grey{background:#9e9e9e}.bad{background:#c62828}
.waiting{background:#90caf9;color:#0d2a45}.busy{background:#1565c0}
.err{color:#8a1c1c;max-width:420px;overflow-wrap:anywhere}
.muted{color:#777}.nw{white-space:nowrap}
"""


def state_class(state: State) -> str:
    """The colour class of a state: good, grey, bad, waiting or busy."""
    if state in _GOOD:
        return "good"
    if state in _GREY:
        return "grey"
    if state in _BAD:
        return "bad"
    if state in _WAITING:
        return "waiting"
    return "busy"


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _figure(key: str, label: str, value: Any) -> str:
    shown = f"{value}%" if key == "percent_done" else f"{value}"
    return f'<div><dt>{_e(label)}</dt><dd id="{_e(key)}" data-value="{_e(value)}">{_e(shown)}</dd></div>'


def chart_svg(by_direction: dict[str, dict[str, int]]) -> str:
    """A horizontal bar per state with migrations in it, grouped by direction, scaled to the largest."""
    bar_h, gap, label_w, bar_w, pad = 18, 6, 190, 520, 28
    peak = max([n for counts in by_direction.values() for n in counts.values()] + [1])
    parts: list[str] = []
    y = 0
    for direction in Direction:
        counts = by_direction.get(direction.value, {})
        shown = [(s, counts.get(s.value, 0)) for s in states(direction) if counts.get(s.value, 0)]
        y += pad
        total = sum(counts.values())
        parts.append(f'<text x="0" y="{y - 8}" font-weight="600">{_e(DIRECTION_TITLES[direction])}: {total}</text>')
        if not shown:
            parts.append(f'<text x="{label_w}" y="{y + 13}" fill="#777">no parties</text>')
            y += bar_h + gap
        for state, n in shown:
            width = max(2.0, bar_w * n / peak)
            colour = COLOURS[state_class(state)]
            parts.append(
                f'<text x="{label_w - 8}" y="{y + 13}" text-anchor="end">{_e(state.value)}</text>'
                f'<rect x="{label_w}" y="{y}" width="{width:.1f}" height="{bar_h}" rx="3" fill="{colour}" '
                f'data-direction="{_e(direction.value)}" data-state="{_e(state.value)}" data-value="{n}">'
                f"<title>{_e(direction.value)} {_e(state.value)}: {n}</title></rect>"
                f'<text x="{label_w + width + 6:.1f}" y="{y + 13}">{n}</text>'
            )
            y += bar_h + gap
    height = y + 4
    width = label_w + bar_w + 60
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" id="chart" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-size="12" font-family="system-ui,sans-serif">'
        f"<title>Migrations per state and direction</title>{''.join(parts)}</svg>"
    )


def counts_table(by_direction: dict[str, dict[str, int]]) -> str:
    """Every state (rows) per direction (columns), zeros included; cells carry their numbers."""
    names = [s for s in State if any(s.value in by_direction.get(d.value, {}) for d in Direction)]
    head = "".join(f'<th class="n">{_e(d.value)}</th>' for d in Direction)
    rows = []
    for state in names:
        cells = []
        for d in Direction:
            counts = by_direction.get(d.value, {})
            if state.value in counts:
                n = counts[state.value]
                cells.append(
                    f'<td class="n" data-direction="{_e(d.value)}" data-state="{_e(state.value)}" '
                    f'data-value="{n}">{n}</td>'
                )
            else:
                cells.append('<td class="n muted">-</td>')
        label = f'<span class="state {state_class(state)}">{_e(state.value)}</span>'
        rows.append(f"<tr><td>{label}</td>{''.join(cells)}</tr>")
    return f'<table id="counts"><thead><tr><th>state</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def errors_table(errors: dict[str, int]) -> str:
    if not errors:
        return '<p class="muted" id="errors-none">No open migration has an error.</p>'
    rows = "".join(
        f'<tr><td>{_e(code)}</td><td class="n" data-code="{_e(code)}" data-value="{n}">{n}</td></tr>'
        for code, n in errors.items()
    )
    return f'<table id="errors"><thead><tr><th>error code</th><th class="n">parties</th></tr></thead>{rows}</table>'


_PARTY_HEAD = (
    ("party_id", "party"),
    ("name", "name"),
    ("direction", "direction"),
    ("state", "state"),
    ("created_at", "imported"),
    ("key_issued_at", "key issued"),
    ("finished_at", "finished"),
    ("updated_at", "last change"),
    ("attempts", "attempts"),
    ("failed_tries", "failed tries"),
    ("last_error", "last error"),
    ("parity", "receive parity"),
)


_TIMES = ("created_at", "key_issued_at", "finished_at", "updated_at")


def _party_row(row: dict[str, Any]) -> str:
    state = State(row["state"])
    extra = " (paused)" if row["paused"] else ""
    if row["failed_state"]:
        extra += f" in {row['failed_state']}"
    error = row["last_error"] or ""
    code = f"[{row['last_error_code']}] " if row["last_error_code"] else ""
    cells = [
        f'<td class="nw">{_e(row["party_id"])}</td>',
        f"<td>{_e(row['name'])}</td>",
        f'<td class="nw">{_e(row["direction"])}</td>',
        f'<td><span class="state {state_class(state)}">{_e(state.value)}</span>{_e(extra)}</td>',
        *(f'<td class="nw">{_e(_short_time(row[c]))}</td>' for c in _TIMES),
        f'<td class="n">{_e(row["attempts"])}</td>',
        f'<td class="n">{_e(row["failed_tries"])}</td>',
        f'<td class="err">{_e(code + error) if error or code else ""}</td>',
        f'<td class="err">{_parity_cell(row)}</td>',
    ]
    return f'<tr data-party="{_e(row["party_id"])}" data-state="{_e(state.value)}">{"".join(cells)}</tr>\n'


# (report column, label) of the receive parity cell: what parity turned on, could not cover,
# found missing after the move, and carried into the business card.
_PARITY_PARTS = (
    ("parity_added", "turned on"),
    ("uncovered_types", "no capability"),
    ("missing_types", "missing"),
    ("card_carried", "card carried"),
)


def _parity_cell(row: dict[str, Any]) -> str:
    """Receive parity of a row (``batch_report.PARITY_COLUMNS``), one labelled line a part;
    each part carries ``data-parity`` for a test to read back."""
    parts = [
        f'<div data-parity="{_e(column)}">{_e(label)}: {_e(row.get(column))}</div>'
        for column, label in _PARITY_PARTS
        if row.get(column)
    ]
    return "".join(parts)


def _short_time(value: str | None) -> str:
    """``2025-01-02T03:04:05.678+00:00`` as ``2025-01-02 03:04:05Z`` (the table is UTC throughout)."""
    if not value:
        return ""
    return value[:19].replace("T", " ") + "Z"


def _page(rep: BatchReport) -> Iterator[str]:
    s = rep.summary
    title = f"Migration report: batch {rep.batch.name}"
    source_name = rep.source_name()  # the file's name only: the operator's folders are not the reader's business
    source = f" from {source_name}" if source_name else ""
    yield (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
    )
    yield (
        f'<h1>Migration report: batch <span id="batch">{_e(rep.batch.name)}</span></h1>'
        f'<p class="meta">Imported {_e(_short_time(rep.batch.created_at.isoformat()))}{_e(source)}; '
        f'report of <time id="generated-at" datetime="{_e(rep.generated_at.isoformat())}">'
        f"{_e(_short_time(rep.generated_at.isoformat()))}</time>, times in UTC.</p>\n"
    )
    yield '<section id="summary"><dl class="figures">'
    yield "".join(_figure(key, label, s[key]) for key, label in FIGURES)
    yield "</dl>\n"
    oldest = s.get("oldest_waiting")
    if oldest:
        yield (
            f'<p class="meta" id="oldest-waiting">Waiting longest: {_e(oldest["party_id"])} in '
            f"{_e(oldest['state'])} since {_e(_short_time(oldest['since']))}.</p>\n"
        )
    yield '<h2>States per direction</h2><div class="panel">'
    yield chart_svg(s["by_direction"])
    yield "</div>\n<h2>Counts</h2>" + counts_table(s["by_direction"])
    yield "\n<h2>Errors by code</h2>" + errors_table(s["errors_by_code"]) + "</section>\n"
    yield '<section><h2>Parties</h2><div class="panel"><table id="parties"><thead><tr>'
    numeric = ("attempts", "failed_tries")
    yield "".join(f"<th{' class=n' if c in numeric else ''}>{_e(label)}</th>" for c, label in _PARTY_HEAD)
    yield "</tr></thead><tbody>\n"


def write_html(rep: BatchReport, out: IO[str], *, plan: Plan | None = None) -> int:
    """Write the page, streaming the party rows; how many rows. ``plan`` (``report --plan``)
    adds the preflight plan's section (``plan_formats.html_section``) after the parties."""
    for chunk in _page(rep):
        out.write(chunk)
    n = 0
    for row in rep.rows():
        out.write(_party_row(row))
        n += 1
    if n == 0:
        out.write(f'<tr><td colspan="{len(_PARTY_HEAD)}" class="muted">The batch has no parties.</td></tr>')
    out.write(f'</tbody></table></div><p class="meta" id="party-count" data-value="{n}">{n} parties.</p>')
    out.write("</section>\n")
    if plan is not None:
        from migration_engine.backoffice.plan_formats import html_section

        out.write(html_section(plan))
    out.write("</main></body></html>\n")
    return n
