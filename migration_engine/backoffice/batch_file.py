"""Batch import files: a streaming reader and validator, with no database access.

The format is in ``docs/configuration.md`` ("Batch files").

``import`` is all or nothing, so the file is read twice: ``validate_file`` reports every
problem (line, column, value, why) and ``iter_valid_rows`` streams the rows again for the
writer. Neither pass holds the rows: a file of hundreds of thousands of parties is read one
line at a time, and the validator keeps only the set of canonical ids it has seen.

Formats: CSV (``.csv``; ``,`` ``;`` or tab, detected from the header, since spreadsheets in
most of Europe save ``;``) and JSON lines (``.jsonl``/``.ndjson``; otherwise a file whose
first non-blank character is ``{``). Bytes are decoded line by line, so one non-UTF-8 line
is one problem instead of an aborted import; a UTF-8 BOM and CRLF endings are accepted.
What a row may contain is ``row_rules``; problems never show a migration key unmasked.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from migration_engine.backoffice.row_rules import (
    COLUMNS,
    REQUIRED,
    Checked,
    ImportRow,
    Problem,
    check_row,
    problem,
)
from migration_engine.errors import ImportRejected, InputError
from migration_engine.machine import Direction

__all__ = [
    "ImportRow",
    "Problem",
    "ValidationResult",
    "detect_format",
    "iter_valid_rows",
    "read_rows",
    "validate_file",
]

MAX_LINE_BYTES = 64 * 1024  # bounds the memory one line can take (csv's own field limit is 128 KiB)
ACTIVE_CHUNK = 1000  # ids per is_active call
_BOM = b"\xef\xbb\xbf"
_JSON_KINDS = {dict: "an object", list: "an array", bool: "true/false", int: "a number", float: "a number"}


class _HugeNumber:
    """A JSON integer too long for ``int()`` (Python refuses over ``sys.get_int_max_str_digits()``
    digits with a ValueError from inside ``json``). No column takes a number anyway, so it is
    kept as its digit count and refused like any other number, in the column it was in."""

    def __init__(self, digits: int) -> None:
        self.digits = digits


def _parse_int(text: str) -> int | _HugeNumber:
    limit = sys.get_int_max_str_digits()
    digits = len(text.lstrip("-"))
    return _HugeNumber(digits) if limit and digits > limit else int(text)


@dataclass(frozen=True)
class ValidationResult:
    """What ``validate_file`` found: the counts and the first ``max_problems`` problems, by line."""

    format: str  # csv | jsonl
    rows: int  # data rows read, valid or not (blank lines and the CSV header not counted)
    problems: list[Problem]
    problem_count: int  # all problems, also those beyond max_problems
    by_direction: dict[Direction, int]  # valid rows per direction
    with_key: int  # valid rows that bring a migration key (the writer then needs the key vault)

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    @property
    def truncated(self) -> bool:
        return self.problem_count > len(self.problems)


class _Lines:
    """Decoded physical lines. Undecodable or overlong lines are skipped and left in ``pending``."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh
        self.number = 0  # the last physical line read
        self.first: int | None = None  # the first line yielded since the caller reset it
        self.pending: list[Problem] = []

    def __iter__(self) -> Iterator[str]:
        while raw := self._fh.readline(MAX_LINE_BYTES + 1):
            self.number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := self._fh.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                self.pending.append(problem(self.number, None, None, f"longer than {MAX_LINE_BYTES} bytes"))
                continue
            if self.number == 1:
                raw = raw.removeprefix(_BOM)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                why = f"not UTF-8 (byte 0x{raw[exc.start]:02x} at position {exc.start + 1}); save as UTF-8"
                self.pending.append(problem(self.number, None, None, why))
                continue
            if self.first is None:
                self.first = self.number
            yield text

    def drain(self) -> list[Problem]:
        out, self.pending = self.pending, []
        return out


def _open(path: Path) -> BinaryIO:
    try:
        return Path(path).open("rb")
    except OSError as exc:
        raise InputError(f"cannot read the import file {path}: {exc.strerror or exc}") from exc


def detect_format(path: Path) -> str:
    """``csv`` or ``jsonl``: by extension, else by the first non-blank character."""
    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    with _open(path) as fh:
        head = fh.read(MAX_LINE_BYTES).removeprefix(_BOM).lstrip()
    return "jsonl" if head[:1] in (b"{", b"[") else "csv"


class _Reader:
    """One streaming pass over a file; ``rows`` counts the data rows read so far."""

    def __init__(self, path: Path, default_profile: str | None, strict: bool = True) -> None:
        self.path = Path(path)
        self.default_profile = default_profile
        self.strict = strict
        self.format = detect_format(self.path)
        self.rows = 0

    def records(self) -> Iterator[Checked | Problem]:
        """Data rows as ``Checked``; file-level problems (encoding, header, syntax) as bare problems."""
        with _open(self.path) as fh:
            if fh.read(2) in (b"\xff\xfe", b"\xfe\xff"):
                yield problem(1, None, None, "the file is UTF-16; save it as UTF-8 (Excel: CSV UTF-8)")
                return
            fh.seek(0)
            lines = _Lines(fh)
            yield from self._csv(lines) if self.format == "csv" else self._jsonl(lines)

    def _skipped(self, lines: _Lines) -> list[Problem]:
        """Problems of the lines that could not be decoded; each of them was a row."""
        skipped = lines.drain()
        self.rows += len(skipped)
        return skipped

    def _jsonl(self, lines: _Lines) -> Iterator[Checked | Problem]:
        for text in lines:
            yield from self._skipped(lines)
            if text.strip():
                self.rows += 1
                yield _json_row(lines.number, text, self.default_profile, self.strict)
        yield from self._skipped(lines)

    def _csv(self, lines: _Lines) -> Iterator[Checked | Problem]:
        source = iter(lines)
        header_text = next((text for text in source if text.strip()), None)
        yield from lines.drain()
        if header_text is None:
            yield problem(max(lines.number, 1), None, None, "the file has no header and no rows")
            return
        delimiter = max(",;\t", key=header_text.count)
        try:
            cells = next(csv.reader([header_text], delimiter=delimiter))
        except csv.Error as exc:
            yield problem(lines.number, None, None, _csv_why(exc))
            return
        header = [c.strip().strip("\ufeff").lower() for c in cells]
        header_problems, readable = _check_header(lines.number, header)
        yield from header_problems
        if not readable:
            return
        reader = csv.reader(source, delimiter=delimiter)
        while True:
            lines.first = None
            try:
                fields = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield from self._skipped(lines)
                self.rows += 1
                yield problem(lines.first or lines.number, None, None, _csv_why(exc))
                continue
            yield from self._skipped(lines)
            if any(f.strip() for f in fields):
                self.rows += 1
                yield self._csv_row(lines.first or lines.number, lines.number, header, fields)
        yield from self._skipped(lines)

    def _csv_row(self, start: int, end: int, header: list[str], fields: list[str]) -> Checked:
        if end > start:  # names may not hold line breaks, so this is a stray quote
            why = f"a quoted value runs from line {start} to line {end}: is a closing quote missing?"
            return Checked(start, None, [problem(start, None, None, why)])
        if len(fields) != len(header):
            why = f"{len(fields)} fields, the header has {len(header)} (a separator in an unquoted value?)"
            return Checked(start, None, [problem(start, None, None, why)])
        values = {c: v for c, v in zip(header, fields, strict=True) if c in COLUMNS}
        return check_row(start, values, self.default_profile, strict=self.strict)


def _csv_why(exc: csv.Error) -> str:
    if "new-line character" in str(exc):
        return "a line break is a bare carriage return (old Mac line endings); save with LF or CRLF"
    return f"unreadable CSV: {exc}"


def _check_header(line: int, header: list[str]) -> tuple[list[Problem], bool]:
    """The header's problems, and whether rows can still be read (extra columns do not stop that)."""
    known = ", ".join(COLUMNS)
    if not set(header) & set(COLUMNS):
        return [problem(line, None, None, f"the first line must be a header with the columns {known}")], False
    problems, readable = [], True
    for i, name in enumerate(header):
        if not name:
            problems.append(problem(line, None, None, f"column {i + 1} of the header has no name"))
        elif name not in COLUMNS:
            problems.append(problem(line, name, None, f"unknown column; the columns are {known}"))
        elif name in header[:i]:
            problems.append(problem(line, name, None, "the column appears twice in the header"))
            readable = False
    for name in REQUIRED:
        if name not in header:
            problems.append(problem(line, name, None, "the required column is missing from the header"))
            readable = False
    return problems, readable


def _unique_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj: dict[str, object] = {}
    for key, value in pairs:
        if key in obj:
            raise KeyError(key)  # json.loads lets it through; _json_row reports it
        obj[key] = value
    return obj


def _json_row(line: int, text: str, default_profile: str | None, strict: bool = True) -> Checked:
    def refused(why: str, column: str | None = None) -> Checked:
        return Checked(line, None, [problem(line, column, None, why)])

    try:
        obj = json.loads(text, object_pairs_hook=_unique_keys, parse_int=_parse_int)
    except KeyError as exc:
        return refused("the key appears twice", str(exc.args[0]))
    except json.JSONDecodeError as exc:  # its message quotes no input, so no key can leak
        return refused(f"invalid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return refused("invalid JSON: nested too deeply")
    if not isinstance(obj, dict):
        kind = _JSON_KINDS.get(type(obj), "a string" if isinstance(obj, str) else _other_kind(obj))
        return refused(f"a line must be a JSON object {{...}}, not {kind}")
    known = ", ".join(COLUMNS)
    problems = [problem(line, k, None, f"unknown key; the keys are {known}") for k in obj if k not in COLUMNS]
    values: dict[str, str] = {}
    for column in COLUMNS:
        value = obj.get(column)
        if isinstance(value, str):
            values[column] = value
        elif value is not None:
            shown = None if isinstance(value, dict | list | _HugeNumber) else value
            kind = _JSON_KINDS.get(type(value), _other_kind(value))
            problems.append(problem(line, column, shown, f"must be a string or null, not {kind}"))
    checked = check_row(line, values, default_profile, strict=strict)
    if problems:  # a mistyped value is reported once, not again as "missing"
        mistyped = {p.column for p in problems}
        checked.problems = problems + [p for p in checked.problems if p.column not in mistyped]
        checked.row = None
    return checked


def _other_kind(value: object) -> str:
    if isinstance(value, _HugeNumber):
        return f"a number ({value.digits} digits)"
    return "null" if value is None else "not a string"


def read_rows(path: Path, *, default_profile: str | None = None) -> Iterator[ImportRow | Problem]:
    """Stream a file: each data line gives an ``ImportRow`` or its problems. No duplicate check."""
    for item in _Reader(path, default_profile).records():
        if isinstance(item, Problem):
            yield item
        elif item.row is not None:
            yield item.row
        else:
            yield from item.problems


def validate_file(
    path: Path,
    *,
    default_profile: str | None = None,
    is_active: Callable[[Iterable[str]], set[str]] | None = None,
    known_profiles: Collection[str] | None = None,
    max_problems: int = 1000,
    strict: bool = True,
) -> ValidationResult:
    """Check a whole file in one streaming pass (and a second only if a party is duplicated).

    Holds the set of canonical ids seen, up to ``ACTIVE_CHUNK`` ids waiting for ``is_active``
    (which answers which of them already have an open migration), and the problems.
    ``strict=False`` is ``plan``'s reading (``row_rules.check_row``).
    """
    reader = _Reader(path, default_profile, strict)
    problems: list[Problem] = []
    count = 0
    by_direction = dict.fromkeys(Direction, 0)
    with_key = 0
    seen: set[str] = set()
    repeats: dict[str, list[int]] = {}  # duplicated party -> its later lines
    waiting: list[tuple[str, int, ImportRow | None]] = []  # party, line, its row if valid so far
    default_reported = False

    def add(found: Problem) -> None:
        nonlocal count
        count += 1
        if len(problems) < max_problems:
            problems.append(found)

    def ask_active() -> None:
        if is_active is not None and waiting:
            nonlocal with_key
            active = is_active([party for party, _, _ in waiting])
            for party, line, row in waiting:
                if party in active:
                    add(problem(line, "party_id", party, "the party already has an open migration"))
                    if row is not None:  # counted as valid when read; it is not
                        by_direction[row.direction] -= 1
                        with_key -= row.migration_key is not None
        waiting.clear()

    for item in reader.records():
        if isinstance(item, Problem):
            add(item)
            continue
        for found in item.problems:
            add(found)
        row = item.row
        if row and row.profile and known_profiles is not None and row.profile not in known_profiles:
            if row.profile != default_profile:
                add(problem(row.line, "profile", row.profile, "unknown profile"))
            elif not default_reported:  # the configured default: say it once, not on every row
                default_reported = True
                add(problem(row.line, "profile", row.profile, "unknown profile (the default profile)"))
            row = None
        if item.party_id is None:
            continue
        if item.party_id in seen:
            repeats.setdefault(item.party_id, []).append(item.line)
            continue
        seen.add(item.party_id)
        if row is not None:
            by_direction[row.direction] += 1
            with_key += row.migration_key is not None
        waiting.append((item.party_id, item.line, row))
        if len(waiting) >= ACTIVE_CHUNK:
            ask_active()
    ask_active()

    if repeats:  # a second pass, to name the first line of each duplicated party
        first: dict[str, int] = {}
        for item in _Reader(path, default_profile, strict).records():
            if isinstance(item, Checked) and item.party_id in repeats:
                first.setdefault(item.party_id, item.line)
        for party, lines in repeats.items():
            for line in lines:
                add(problem(line, "party_id", party, f"duplicate: the party is also on line {first[party]}"))
    problems.sort(key=lambda p: p.line)
    return ValidationResult(reader.format, reader.rows, problems, count, by_direction, with_key)


def iter_valid_rows(path: Path, *, default_profile: str | None = None, strict: bool = True) -> Iterator[ImportRow]:
    """Stream the rows of a file that ``validate_file`` passed, for the writer.

    Every row and duplicate is checked again (the file may have changed since validation);
    the first fault raises ``ImportRejected``, and the writer must then roll back.
    """
    seen: set[str] = set()
    for item in _Reader(path, default_profile, strict).records():
        found = [item] if isinstance(item, Problem) else item.problems
        if isinstance(item, Checked) and item.row is not None:
            if item.row.party_id not in seen:
                seen.add(item.row.party_id)
                yield item.row
                continue
            found = [problem(item.line, "party_id", item.row.party_id, "duplicate party in the file")]
        raise ImportRejected(
            f"{Path(path).name}: {found[0]}; a file with problems is not imported at all",
            problems=[p.as_dict() for p in found],
        )
