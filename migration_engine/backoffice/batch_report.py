"""`report --batch NAME`: a batch's outcome, one row per party, as CSV, JSON or HTML.

The summary is what `status --batch NAME --json` prints (the same function, less the worker
processes), so a report and the status agree; the rows are read a page at a time and
written as they come, so a batch of 100,000 parties is reported without holding it in
memory. No row carries a key.

Columns (``COLUMNS``): the party and its migration, the state it is in (for a finished
batch its final state; ``failed_state`` says where a needs_attention one failed), when it was
imported, when its key was issued, when it last changed and when it finished (completed or
cancelled), ``attempts`` (failed tries in its current state, as the retry policy counts
them), ``failed_tries`` (every failed try the audit trail records, over its whole life) and
the last error with its code. A row is the migration as `show` prints it
(``overview.migration_dict``), cut to those columns, plus the two figures only a report has.

Receive parity (``PARITY_COLUMNS``, from the steps' audit details; empty without a snapshot):
``parity_added`` (capabilities turned on because the party received their types before),
``uncovered_types`` (types received before that no capability covers), ``missing_types``
(types received before that the SMP did not publish after the move: why a party is held, or
its warning) and ``card_carried`` (business card fields carried from the network into the
enrollment). Lists are space-separated (document type ids hold no spaces).

CSV and JSON are written here, the HTML page by ``report_html``; ``report_formats`` picks
the writer for ``--format``.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator, Mapping
from datetime import datetime
from itertools import islice
from typing import IO, Any

from migration_engine.backoffice import overview
from migration_engine.errors import InputError
from migration_engine.machine import TERMINAL_STATES
from migration_engine.store import BatchInfo, MigrationRecord, Store

COLUMNS = (
    "party_id",
    "name",
    "direction",
    "state",
    "paused",
    "failed_state",
    "profile",
    "new_provider",
    "created_at",
    "key_issued_at",
    "updated_at",
    "finished_at",
    "attempts",
    "failed_tries",
    "last_error_code",
    "last_error",
    "parity_added",
    "uncovered_types",
    "missing_types",
    "card_carried",
)
PARITY_COLUMNS = ("parity_added", "uncovered_types", "missing_types", "card_carried")
_PAGE = 1000
INTERNAL = ("workers",)  # status keys a report leaves out
# A cell that starts with one of these is a formula to a spreadsheet (OWASP's list for CSV
# injection). Names and error texts come from outside, and a spreadsheet set to another
# separator (`;` in NL/DE locales, tab when pasted) splits a field at that character, so a
# starter right after a separator (spaces between allowed) begins a cell too: each such starter
# gets a ' in front, which a spreadsheet shows as text.
_FORMULA_STARTER = re.compile(r"(?:^|(?<=[,;\t\r\n]))( *)(?=[=+\-@\t\r])")


class BatchReport:
    """What every format shows: the batch, when, the status summary, and the rows (streamed)."""

    def __init__(self, store: Store, batch: BatchInfo, generated_at: datetime) -> None:
        self._store = store
        self.batch = batch
        self.generated_at = generated_at
        # What `status --batch NAME --json` prints, less the worker processes (host names and
        # pids are the operator's business, not the customer's).
        status = overview.status(store, batch_name=batch.name, now=generated_at)
        self.summary: dict[str, Any] = {k: v for k, v in status.items() if k not in INTERNAL}

    def rows(self) -> Iterator[dict[str, Any]]:
        """One dict per party (``COLUMNS``), in import order, a page of the store at a time."""
        records = self._store.list_migrations(batch_name=self.batch.name)
        while page := list(islice(records, _PAGE)):
            ids = [r.id for r in page]
            tries = self._store.error_event_counts(ids)
            parity = self._store.parity_details(ids)
            for record in page:
                yield row_dict(record, tries.get(record.id, 0), parity.get(record.id))

    def header(self) -> dict[str, Any]:
        return {
            "batch": self.batch.name,
            "source": self.source_name(),
            "created_at": _iso(self.batch.created_at),
            "generated_at": _iso(self.generated_at),
        }

    def source_name(self) -> str | None:
        """The name of the file the batch was imported from, without its folders.

        The store keeps the path as given on the operator's machine; a report goes to a customer,
        to whom the operator's folders (user names, share names) are none of their business.
        """
        return file_name(self.batch.source)


def file_name(source: str | None) -> str | None:
    """The last part of a path written on any system (``/`` or ``\\`` between folders)."""
    if not source:
        return None
    return re.split(r"[/\\]", source)[-1] or None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def row_dict(
    record: MigrationRecord, failed_tries: int, parity: Mapping[str, Mapping[str, Any]] | None = None
) -> dict[str, Any]:
    """A report row: ``overview.migration_dict`` (which never holds a key) cut to ``COLUMNS``;
    ``parity``: the migration's ``Store.parity_details``."""
    shown = overview.migration_dict(record)
    shown["finished_at"] = shown["completed_at"] if record.state in TERMINAL_STATES else None
    shown["failed_tries"] = failed_tries
    shown.update(parity_cells(parity or {}))
    return {column: shown[column] for column in COLUMNS}


def parity_cells(parity: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """The ``PARITY_COLUMNS`` of a row from its parity details (trigger -> detail)."""
    configured = parity.get("capabilities_applied", {})
    card = parity.get("permissions_granted", {}).get("business_card", {})
    verdict = parity.get("fail") or parity.get("verified") or {}

    def joined(values: Any) -> str | None:
        return " ".join(str(v) for v in values) if values else None

    return {
        "parity_added": joined(sorted(configured.get("added", {}))),
        "uncovered_types": joined(configured.get("uncovered", [])),
        "missing_types": joined(verdict.get("missing", [])),
        "card_carried": joined(sorted(card.get("carried", {}))),
    }


def build(store: Store, *, batch_name: str, now: datetime) -> BatchReport:
    """The report of batch ``batch_name``; ``InputError`` when there is no such batch."""
    info = store.batch_info(batch_name)
    if info is None:
        raise InputError(f"there is no batch named {batch_name!r}")
    return BatchReport(store, info, now)


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return defuse(str(value))


def defuse(text: str) -> str:
    """``text`` with a ' before every formula starter that opens it or follows a separator."""
    return _FORMULA_STARTER.sub(r"\1'", text)


def write_csv(rep: BatchReport, out: IO[str]) -> int:
    """The rows as CSV with a header line; how many rows.

    Every field is quoted, so a separator inside a field never ends it for a reader that
    honours quotes; ``defuse`` covers the readers that split on another separator anyway.
    """
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_ALL)
    writer.writerow(COLUMNS)
    n = 0
    for row in rep.rows():
        writer.writerow([_csv_cell(row[c]) for c in COLUMNS])
        n += 1
    return n


def write_json(rep: BatchReport, out: IO[str]) -> int:
    """One JSON document: the batch, the summary and ``parties`` (written row by row); how many rows."""
    head = json.dumps({**rep.header(), "summary": rep.summary}, indent=2, ensure_ascii=False)
    out.write(head[:-2] + ',\n  "parties": [')  # reopen the object to stream the list into it
    n = 0
    for row in rep.rows():
        out.write(("," if n else "") + "\n    " + json.dumps(row, ensure_ascii=False))
        n += 1
    out.write("\n  ]\n}\n" if n else "]\n}\n")
    return n
