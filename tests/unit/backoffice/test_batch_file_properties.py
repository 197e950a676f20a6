"""Whatever a batch file holds, the validator answers with problems, never a traceback.

Import files come from spreadsheets, scripts and hand edits, so anything can be in them:
any text, lone UTF-16 surrogates written as JSON escapes, numbers longer than Python turns
into an ``int``, values of the wrong type, missing and extra columns, bytes that are not
UTF-8. For all of it ``validate_file`` must return (or raise the project's InputError), and
what it passes the writer must be able to store: ``iter_valid_rows`` then yields rows whose
every text encodes as UTF-8, so ``--dry-run`` and the import agree. Every problem must print.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migration_engine.backoffice.batch_file import iter_valid_rows, validate_file
from migration_engine.backoffice.row_rules import COLUMNS
from migration_engine.errors import InputError

PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

ANY_TEXT = st.text(max_size=30)  # hypothesis' default alphabet includes lone surrogates
NAMES = st.one_of(st.sampled_from(COLUMNS), st.sampled_from(COLUMNS).map(str.upper), st.text(max_size=10))
PLAUSIBLE = {  # values close to valid, so rows get past the first check and reach the later ones
    "party_id": st.sampled_from(
        [
            "0106:12345678",
            "0192:745707327",
            "0088:8712345678906",
            "iso6523-actorid-upis::0106:12345678",
            "0106:1234567x",
            "",
        ]
    ),
    "direction": st.sampled_from(["to-econnect", "from-econnect", "INBOUND", "outbound", "sideways", ""]),
    "migration_key": st.sampled_from(["11AAbb$$cc#D", "short", "11AAbb$$ cc#D", "11AAbb$$\udcffcc#D", ""]),
    "profile": st.sampled_from(["default", "other", "../etc", ""]),
    "name": st.sampled_from(["Acme B.V.", "Nordic\tAS", "x" * 300, "Café \ud800", ""]),
    "new_provider": st.sampled_from(["acme-ap", "a/b?c", ""]),
}


def column_value(column: str) -> st.SearchStrategy[str]:
    return st.one_of(PLAUSIBLE.get(column, ANY_TEXT), ANY_TEXT)


def huge_number(draw: st.DrawFn) -> str:
    """JSON number text; past 4300 digits ``int()`` refuses it (``sys.get_int_max_str_digits``)."""
    digits = draw(st.sampled_from([1, 20, 4300, 4301, 5000]))
    sign = draw(st.sampled_from(["", "-"]))
    tail = draw(st.sampled_from(["", ".5", "e3", "e400", "E-999"]))
    return sign + "7" * digits + tail


@st.composite
def json_value(draw: st.DrawFn, column: str) -> str:
    """The JSON text of one value: mostly strings, but every other JSON type too."""
    kind = draw(st.sampled_from(["plausible", "text", "surrogate", "number", "other", "nested"]))
    if kind == "plausible":
        return json.dumps(draw(column_value(column)))
    if kind == "text":
        return json.dumps(draw(ANY_TEXT), ensure_ascii=draw(st.booleans())).replace("\ud800", "\\ud800")
    if kind == "surrogate":  # a lone surrogate, escaped as JSON allows it
        half = draw(st.integers(0xD800, 0xDFFF))
        return json.dumps(draw(ANY_TEXT))[:-1] + f"\\u{half:04x}" + '"'
    if kind == "number":
        return huge_number(draw)
    if kind == "other":
        return draw(st.sampled_from(["true", "false", "null", "NaN", "Infinity", "-Infinity", "1.5", "[]", "{}"]))
    return json.dumps(
        draw(
            st.recursive(
                st.none() | st.booleans() | ANY_TEXT,
                lambda inner: st.lists(inner, max_size=3) | st.dictionaries(ANY_TEXT, inner, max_size=3),
                max_leaves=5,
            )
        )
    )


@st.composite
def json_line(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["object", "object", "object", "raw", "scalar"]))
    if kind == "raw":  # anything, valid JSON or not
        return draw(st.text(max_size=60)).replace("\n", " ").replace("\r", " ")
    if kind == "scalar":
        return draw(json_value("name"))
    columns = draw(st.lists(NAMES, max_size=8))
    members = [f"{json.dumps(c)}: {draw(json_value(c))}" for c in columns]
    return "{" + ", ".join(members) + "}"


@st.composite
def csv_file(draw: st.DrawFn) -> str:
    delimiter = draw(st.sampled_from([",", ";", "\t"]))
    header = draw(st.one_of(st.permutations(COLUMNS), st.lists(NAMES, min_size=1, max_size=8)))
    if draw(st.booleans()):
        header = header[: draw(st.integers(0, len(header)))]  # drop columns, perhaps required ones
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        width = len(header) + draw(st.sampled_from([0, 0, 0, -1, 1, 3]))  # mostly right, sometimes not
        cells = [draw(column_value(header[i] if i < len(header) else "extra")) for i in range(max(width, 0))]
        if draw(st.booleans()):
            cells = ['"' + c.replace('"', '""') + '"' for c in cells]
        rows.append(delimiter.join(cells))
    return "\n".join([delimiter.join(header), *rows]) + draw(st.sampled_from(["", "\n", "\r\n"]))


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    """One folder for the module: hypothesis runs many examples in one test call."""
    with tempfile.TemporaryDirectory() as tmp:
        yield Path(tmp)


def check_file(path: Path) -> None:
    """The property: problems or rows, never another exception; what passes can be stored."""
    try:
        result = validate_file(
            path, default_profile="default", is_active=lambda ids: set(), known_profiles={"default", "other"}
        )
    except InputError:
        return
    for found in result.problems:
        str(found).encode("utf-8")  # a report prints and is stored: no lone surrogate in it
        json.dumps(found.as_dict(), ensure_ascii=False).encode("utf-8")
    assert result.problem_count >= len(result.problems)
    if result.ok:
        rows = list(iter_valid_rows(path, default_profile="default"))
        assert len(rows) == sum(result.by_direction.values())
        for row in rows:
            for text in (row.party_id, row.migration_key, row.profile, row.name, row.new_provider):
                (text or "").encode("utf-8")  # what the writer sends to the database


def write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path


@PROPERTY
@given(lines=st.lists(json_line(), max_size=6), bom=st.booleans())
def test_any_json_lines_give_problems_not_exceptions(folder: Path, lines: list[str], bom: bool) -> None:
    data = ("\ufeff" if bom else "") + "\n".join(lines)
    check_file(write(folder, "batch.jsonl", data.encode("utf-8", "surrogatepass")))


@PROPERTY
@given(text=csv_file())
def test_any_csv_gives_problems_not_exceptions(folder: Path, text: str) -> None:
    # A CSV holds no JSON escapes: a surrogate can only arrive as bytes UTF-8 refuses.
    check_file(write(folder, "batch.csv", text.encode("utf-8", "surrogatepass")))


@PROPERTY
@given(data=st.binary(max_size=300), name=st.sampled_from(["batch.csv", "batch.jsonl", "batch.txt"]))
def test_any_bytes_give_problems_not_exceptions(folder: Path, data: bytes, name: str) -> None:
    check_file(write(folder, name, data))
