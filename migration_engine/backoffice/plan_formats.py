"""The preflight plan as text, JSON, CSV and as a section of the HTML report.

Every format shows the same figures (``Plan.summary``) and the same class per party, so a
test can read one back and compare it with another. CSV is written like the batch report's
(every field quoted, formula starters defused: ``batch_report.defuse``); the HTML section
escapes every value and carries ``data-*`` attributes with the numbers and classes.
"""

from __future__ import annotations

import csv
import json
from html import escape
from typing import IO, Any

from migration_engine.backoffice import plan_classes
from migration_engine.backoffice.batch_report import defuse
from migration_engine.backoffice.plan import PartyPlan, Plan

CSV_COLUMNS = (
    "party_id",
    "direction",
    "line",
    "class",
    "blocking",
    "findings",
    "lookup",
    "provider",
    "current_provider",
    "smp_host",
    "document_types",
    "business_card_name",
    "action",
)


def _source(plan: Plan) -> str:
    if "batch" in plan.source:
        return f"batch {plan.source['batch']}"
    return f"file {plan.source.get('file', '')}"


def _why(p: PartyPlan) -> str:
    return "; ".join(f"{f.klass}: {f.why}" for f in p.findings)


def text_lines(plan: Plan, *, show_all: bool = False) -> list[str]:
    """Summary counts first, then a line per party that is not ready (every party with ``show_all``)."""
    s = plan.summary()
    lines = [
        f"plan of {_source(plan)} at {plan.taken_at.isoformat(timespec='seconds')}: {s['total']} parties, "
        f"{s['blocking']} blocking, {s['warnings']} with warnings, {s['ready']} ready"
    ]
    if s["left_out"]:
        lines.append(f"  ({s['left_out']} migrations of the batch are under way or finished: not planned)")
    for name, n in s["by_class"].items():
        mark = "blocks" if name in plan_classes.BLOCKING else ("warns" if name in plan_classes.WARNINGS else "")
        lines.append(f"  {name:<18} {n:>7}  {mark}".rstrip())
    shown = [p for p in plan.parties if show_all or p.klass != plan_classes.READY]
    if shown:
        lines.append("")
    for p in shown:
        where = f"line {p.row.line}  " if p.row.line is not None else ""
        flag = "BLOCKS" if p.blocking else ("warns" if p.klass != plan_classes.READY else "ok")
        lines.append(f"{where}{p.row.party_id}  {p.row.direction.value}  {p.klass}  {flag}")
        for f in p.findings:
            lines.append(f"    {f.klass}: {f.why}")
        for note in p.notes:
            lines.append(f"    note: {note}")
        if p.klass != plan_classes.READY:
            lines.append(f"    to do: {p.action}")
    if plan.limits:
        lines.append("")
        lines.append("lookups limited to " + ", ".join(f"{k}={v}" for k, v in plan.limits.items()))
    return lines


def write_json(plan: Plan, out: IO[str]) -> None:
    out.write(json.dumps(plan.as_dict(), indent=2, ensure_ascii=False) + "\n")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return defuse(str(value))


def csv_row(p: PartyPlan) -> list[str]:
    d = p.as_dict()
    card = d["business_card"] or {}
    values: dict[str, Any] = {
        **d,
        "findings": _why(p),
        "document_types": " ".join(d["document_types"]),
        "business_card_name": card.get("name"),
    }
    return [_cell(values[c]) for c in CSV_COLUMNS]


def write_csv(plan: Plan, out: IO[str]) -> None:
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(CSV_COLUMNS)
    for p in plan.parties:
        writer.writerow(csv_row(p))


# ---- HTML -----------------------------------------------------------------------------


def _e(value: Any) -> str:
    return escape("" if value is None else str(value), quote=True)


def _badge(p: PartyPlan) -> str:
    colour = "bad" if p.blocking else ("waiting" if p.klass != plan_classes.READY else "good")
    return f'<span class="state {colour}">{_e(p.klass)}</span>'


def html_section(plan: Plan) -> str:
    """``<section id="plan">``: the summary figures, the count per class, a row per party."""
    s = plan.summary()
    figures = "".join(
        f'<div><dt>{_e(label)}</dt><dd id="plan-{key}" data-value="{s[key]}">{s[key]}</dd></div>'
        for key, label in (("total", "planned"), ("blocking", "blocking"), ("warnings", "warnings"), ("ready", "ready"))
    )
    classes = "".join(
        f'<tr><td>{_e(name)}</td><td>{"blocks" if name in plan_classes.BLOCKING else "-"}</td>'
        f'<td class="n" data-class="{_e(name)}" data-value="{n}">{n}</td>'
        f"<td>{_e(plan_classes.CLASSES[name].action)}</td></tr>"
        for name, n in s["by_class"].items()
    )
    rows = []
    for p in plan.parties:
        d = p.as_dict()
        card = d["business_card"] or {}
        rows.append(
            f'<tr data-plan-party="{_e(p.row.party_id)}" data-class="{_e(p.klass)}" '
            f'data-blocking="{"true" if p.blocking else "false"}">'
            f'<td class="nw">{_e(p.row.party_id)}</td><td class="nw">{_e(p.row.direction.value)}</td>'
            f"<td>{_badge(p)}</td><td>{_e(d['provider'] or d['smp_host'] or d['lookup'])}</td>"
            f'<td class="n">{len(d["document_types"])}</td><td>{_e(card.get("name"))}</td>'
            f'<td class="err">{_e(_why(p))}</td></tr>\n'
        )
    if not rows:
        rows.append('<tr><td colspan="7" class="muted">No party to plan.</td></tr>')
    taken = plan.taken_at.isoformat(timespec="seconds")
    return (
        '<section id="plan"><h2>Preflight plan</h2>'
        f'<p class="meta">What the Peppol network said at <time id="plan-taken-at" datetime="{_e(taken)}">'
        f"{_e(taken.replace('T', ' '))}</time> about the parties not yet under way"
        + (f" ({s['left_out']} others not planned)" if s["left_out"] else "")
        + ".</p>"
        f'<dl class="figures">{figures}</dl>'
        '<h2>Plan per class</h2><table id="plan-classes"><thead><tr><th>class</th><th>blocks</th>'
        f'<th class="n">parties</th><th>to do</th></tr></thead><tbody>{classes}</tbody></table>'
        '<h2>Plan per party</h2><div class="panel"><table id="plan-parties"><thead><tr><th>party</th>'
        '<th>direction</th><th>class</th><th>provider</th><th class="n">document types</th>'
        "<th>business card</th><th>findings</th></tr></thead><tbody>\n"
        + "".join(rows)
        + "</tbody></table></div></section>\n"
    )
