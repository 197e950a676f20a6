"""Import files: every kind of bad row says line, column and why; keys never leak; streaming."""

import json
import tracemalloc
from pathlib import Path

import pytest

from migration_engine.backoffice import batch_file
from migration_engine.backoffice.batch_file import (
    ImportRow,
    Problem,
    ValidationResult,
    detect_format,
    iter_valid_rows,
    read_rows,
    validate_file,
)
from migration_engine.errors import ImportRejected, InputError
from migration_engine.machine import Direction

HEADER = "party_id,direction,migration_key,profile,name,new_provider"
KEY = "11AAbb$$cc#D"  # valid, 12 characters: masked as 11…#D
KEY2 = "Zz99!!Yy88@@Xx77"
GOOD = [
    f"0106:12345678,to-econnect,{KEY},default,Acme B.V.,",
    "0192:745707327,from-econnect,,,Nordic AS,acme-ap",
]
BAD_LINE = 5  # header, two good rows, a blank line, then the row under test


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        content = content.encode("utf-8")
    path.write_bytes(content)
    return path


def csv_file(tmp_path: Path, *rows: str, header: str = HEADER, name: str = "batch.csv") -> Path:
    return write(tmp_path, name, "\n".join([header, *rows]) + "\n")


def assert_only_problem(result: ValidationResult, line: int, column: str | None, why: str) -> None:
    assert result.problems, "expected a problem"
    assert [(p.line, p.column) for p in result.problems] == [(line, column)], result.problems
    assert why in result.problems[0].why, result.problems[0]


BAD_CSV_ROWS = [
    ("empty party id", ",to-econnect,,,,", "party_id", "the party id is missing or empty"),
    ("blank party id", "   ,to-econnect,,,,", "party_id", "missing or empty"),
    ("no colon", "12345678,to-econnect,,,,", "party_id", "no colon"),
    ("ICD not 4 digits", "106:12345678,to-econnect,,,,", "party_id", "not 4 digits"),
    ("unknown ICD", "1234:5678,to-econnect,,,,", "party_id", "unknown ICD 1234"),
    ("unknown alias", "XX:KVK:12345678,to-econnect,,,,", "party_id", "nor a scheme alias"),
    ("removed ICD", "9956:0899965307,to-econnect,,,,", "party_id", "removed from the code list"),
    ("unregistrable ICD", "0205:ABC1234,to-econnect,,,,", "party_id", "cannot be registered"),
    ("illegal character", "0106:1234+678,to-econnect,,,,", "party_id", "character '+'"),
    ("id too long", "9944:" + "a" * 131 + ",to-econnect,,,,", "party_id", "at most 135"),
    ("scheme in upper case", "ISO6523-ACTORID-UPIS::0106:12345678,inbound,,,,", "party_id", "case-sensitive"),
    ("GLN checksum", "0088:7300010000002,to-econnect,,,,", "party_id", "GLN check digit"),
    ("NO:ORG checksum", "0192:745707328,from-econnect,,,,", "party_id", "NO:ORG check digit"),
    ("BE:EN checksum", "0208:0899965308,to-econnect,,,,", "party_id", "expected 07"),
    ("BE:EN first digit", "0208:2899965307,to-econnect,,,,", "party_id", "starts with 0 or 1"),
    ("SE:ORGNR Luhn", "0007:5566261921,to-econnect,,,,", "party_id", "Luhn"),
    ("ABN mod 89", "0151:51824753557,to-econnect,,,,", "party_id", "mod 89"),
    ("OIN length", "0190:123,to-econnect,,,,", "party_id", "20 digits"),
    ("KvK length", "0106:1234567,to-econnect,,,,", "party_id", "8 digits"),
    ("CVR mod 11", "0184:13585629,to-econnect,,,,", "party_id", "mod 11"),
    ("empty direction", "0106:12345670,,,,,", "direction", "the direction is missing or empty"),
    ("unknown direction", "0106:12345670,sideways,,,,", "direction", "the direction is unknown"),
    ("weak key: short", "0106:12345670,to-econnect,11AAbb$,,,", "migration_key", "at least 8"),
    ("weak key: specials", "0106:12345670,to-econnect,11AAbbzz,,,", "migration_key", "special characters"),
    (
        "weak key: too long",
        "0106:12345670,to-econnect,11AAbb$$11AAbb$$11AAbb$$1,,,",
        "migration_key",
        "at most 24",
    ),
    ("key with a space", "0106:12345670,to-econnect,11AA bb$$cc,,,", "migration_key", "white space"),
    ("key with a leading space", f"0106:12345670,to-econnect, {KEY},,,", "migration_key", "white space"),
    ("key on from-econnect", f"0106:12345670,from-econnect,{KEY},,,", "migration_key", "to-econnect rows"),
    ("profile on from-econnect", "0106:12345670,outbound,,default,,", "profile", "to-econnect rows only"),
    ("profile that is a path", "0106:12345670,to-econnect,,../../etc/passwd,,", "profile", "profile name"),
    (
        "name too long",
        "0106:12345670,to-econnect,,," + "n" * 257 + ",",
        "name",
        "257 characters; at most 256",
    ),
    ("name with a tab", "0106:12345670,to-econnect,,,Acme\tBV,", "name", "control character"),
    ("name with a NUL", "0106:12345670,to-econnect,,,Acme\x00BV,", "name", "control character"),
    (
        "new_provider on to-econnect",
        "0106:12345670,to-econnect,,,,acme-ap",
        "new_provider",
        "from-econnect rows only",
    ),
    (
        "new_provider not URL-safe",
        "0106:12345670,from-econnect,,,,evil.example/x?y",
        "new_provider",
        "handoff URL",
    ),
    ("too many fields", "0106:12345670,to-econnect,,,Acme, Inc.,", None, "7 fields, the header has 6"),
    ("too few fields", "0106:12345670,to-econnect", None, "2 fields, the header has 6"),
]


@pytest.mark.parametrize(("kind", "row", "column", "why"), BAD_CSV_ROWS, ids=[r[0] for r in BAD_CSV_ROWS])
def test_bad_csv_row_says_line_column_and_why(tmp_path, kind, row, column, why):
    path = csv_file(tmp_path, *GOOD, "", row, "0106:87654321,to-econnect,,,Last,")
    result = validate_file(path, default_profile="default")
    assert_only_problem(result, BAD_LINE, column, why)
    assert not result.ok and result.rows == 4
    assert result.by_direction == {Direction.TO_ECONNECT: 2, Direction.FROM_ECONNECT: 1}
    with pytest.raises(ImportRejected) as info:
        list(iter_valid_rows(path))
    assert info.value.problems[0]["line"] == BAD_LINE


def test_a_row_with_several_faults_reports_each(tmp_path):
    path = csv_file(tmp_path, f"0192:745707328,from-econnect,{KEY},default,,a/b")
    got = {(p.line, p.column) for p in validate_file(path).problems}
    assert got == {(2, "party_id"), (2, "migration_key"), (2, "profile"), (2, "new_provider")}


def test_unclosed_quote_names_the_lines(tmp_path):
    path = csv_file(tmp_path, *GOOD, '0106:12345670,to-econnect,,,"Acme,', "0106:87654321,to-econnect,,,,")
    result = validate_file(path)
    assert_only_problem(result, 4, None, "runs from line 4 to line 5: is a closing quote missing?")


def test_non_utf8_line_is_one_problem_and_the_rest_is_read(tmp_path):
    content = (HEADER + "\n" + GOOD[0] + "\n").encode() + b"0106:12345670,to-econnect,,,Caf\xe9,\n"
    content += (GOOD[1] + "\n").encode()
    result = validate_file(write(tmp_path, "latin1.csv", content), default_profile="default")
    assert_only_problem(result, 3, None, "not UTF-8 (byte 0xe9 at position 32)")
    assert result.rows == 3 and sum(result.by_direction.values()) == 2


def test_overlong_line_is_skipped_without_reading_it_whole(tmp_path):
    long_row = "0106:12345670,to-econnect,,,," + "x" * (batch_file.MAX_LINE_BYTES * 3)
    result = validate_file(csv_file(tmp_path, GOOD[0], long_row, GOOD[1]))
    assert_only_problem(result, 3, None, f"longer than {batch_file.MAX_LINE_BYTES} bytes")


def test_duplicate_names_both_lines(tmp_path):
    path = csv_file(
        tmp_path,
        *GOOD,
        "NL:KVK:12345678,from-econnect,,,,",
        "iso6523-actorid-upis::0106:12345678,inbound,,,,",
    )
    result = validate_file(path)
    assert [(p.line, p.column, p.value) for p in result.problems] == [
        (4, "party_id", "0106:12345678"),
        (5, "party_id", "0106:12345678"),
    ]
    assert all("also on line 2" in p.why for p in result.problems)
    with pytest.raises(ImportRejected, match="line 4, party_id '0106:12345678': duplicate"):
        list(iter_valid_rows(path))


def test_active_parties_are_asked_in_chunks(tmp_path, monkeypatch):
    monkeypatch.setattr(batch_file, "ACTIVE_CHUNK", 3)
    rows = [f"0106:{10000000 + i},to-econnect,,,," for i in range(8)]
    calls = []

    def is_active(ids):
        ids = list(ids)
        calls.append(ids)
        return {"0106:10000004", "0106:99999999"}

    result = validate_file(csv_file(tmp_path, *rows), is_active=is_active)
    assert [len(c) for c in calls] == [3, 3, 2]
    assert_only_problem(result, 6, "party_id", "already has an open migration")
    assert result.by_direction[Direction.TO_ECONNECT] == 7


def test_unknown_profile_and_an_unknown_default_reported_once(tmp_path):
    rows = [
        "0106:10000000,to-econnect,,gold,,",
        "0106:10000001,to-econnect,,,,",
        "0106:10000002,to-econnect,,,,",
    ]
    result = validate_file(csv_file(tmp_path, *rows), default_profile="silver", known_profiles={"bronze"})
    assert [(p.line, p.column, p.value) for p in result.problems] == [
        (2, "profile", "gold"),
        (3, "profile", "silver"),
    ]
    assert "unknown profile" in result.problems[0].why and "default" in result.problems[1].why


@pytest.mark.parametrize(
    ("header", "column", "why"),
    [
        ("party_id,migration_key", "direction", "required column is missing"),
        ("direction,name", "party_id", "required column is missing"),
        ("party_id,direction,colour", "colour", "unknown column"),
        ("party_id,direction,,name", None, "column 3 of the header has no name"),
        ("party_id,direction,direction", "direction", "appears twice"),
        ("0106:12345678,to-econnect", None, "the first line must be a header"),
    ],
)
def test_header_problems_are_on_line_1(tmp_path, header, column, why):
    result = validate_file(csv_file(tmp_path, header=header))
    assert_only_problem(result, 1, column, why)


def test_unknown_extra_column_still_validates_the_rows(tmp_path):
    path = csv_file(
        tmp_path, "0106:12345678,to-econnect,x", "0106:1,to-econnect,y", header="party_id,direction,notes"
    )
    assert [(p.line, p.column) for p in validate_file(path).problems] == [(1, "notes"), (3, "party_id")]


def test_empty_file(tmp_path):
    assert_only_problem(validate_file(write(tmp_path, "e.csv", "\n\n")), 2, None, "no header and no rows")


def test_header_only_is_a_clean_empty_batch(tmp_path):
    result = validate_file(csv_file(tmp_path))
    assert result.ok and result.rows == 0


def test_bom_crlf_semicolons_and_mixed_case_header(tmp_path):
    text = "\ufeffParty_ID ; Direction;MIGRATION_KEY\r\n0106:12345678;TO-ECONNECT;" + KEY + "\r\n\r\n"
    text += "0192:745707327;Outbound;\r\n"
    path = write(tmp_path, "excel.csv", text)
    result = validate_file(path)
    assert result.ok and result.rows == 2 and result.with_key == 1
    rows = list(iter_valid_rows(path, default_profile="default"))
    assert [(r.line, r.party_id, r.direction, r.migration_key, r.profile) for r in rows] == [
        (2, "0106:12345678", Direction.TO_ECONNECT, KEY, "default"),
        (4, "0192:745707327", Direction.FROM_ECONNECT, None, None),
    ]


def test_tabs_and_quoted_separators(tmp_path):
    path = write(tmp_path, "t.csv", 'party_id\tdirection\tname\n0106:12345678\tinbound\t"Acme, ""BV"";"\n')
    (row,) = list(read_rows(path))
    assert isinstance(row, ImportRow) and row.name == 'Acme, "BV";'


def test_utf16_file_is_refused_once(tmp_path):
    path = write(tmp_path, "u16.csv", (HEADER + "\n" + GOOD[0] + "\n").encode("utf-16"))
    assert_only_problem(validate_file(path), 1, None, "UTF-16")


BAD_JSON_LINES = [
    ("invalid JSON", '{"party_id": "0106:12345670", ', None, "invalid JSON"),
    ("array", '["0106:12345670", "to-econnect"]', None, "not an array"),
    ("string", '"0106:12345670"', None, "not a string"),
    ("null", "null", None, "not null"),
    ("party id a number", '{"party_id": 12345670, "direction": "inbound"}', "party_id", "not a number"),
    ("direction a bool", '{"party_id": "0106:12345670", "direction": true}', "direction", "not true/false"),
    (
        "name an object",
        '{"party_id": "0106:12345670", "direction": "inbound", "name": {}}',
        "name",
        "not an object",
    ),
    ("missing party id", '{"direction": "inbound"}', "party_id", "missing or empty"),
    ("null direction", '{"party_id": "0106:12345670", "direction": null}', "direction", "missing or empty"),
    (
        "unknown key",
        '{"party_id": "0106:12345670", "direction": "inbound", "prio": 1}',
        "prio",
        "unknown key",
    ),
    (
        "duplicate key",
        '{"party_id": "0106:12345670", "party_id": "0106:1", "direction": "inbound"}',
        "party_id",
        "appears twice",
    ),
    ("bad checksum", '{"party_id": "0192:745707328", "direction": "outbound"}', "party_id", "NO:ORG"),
]


@pytest.mark.parametrize(
    ("kind", "line", "column", "why"), BAD_JSON_LINES, ids=[r[0] for r in BAD_JSON_LINES]
)
def test_bad_json_line_says_line_column_and_why(tmp_path, kind, line, column, why):
    good = [
        json.dumps({"party_id": "0106:12345678", "direction": "to-econnect", "migration_key": KEY}),
        json.dumps({"party_id": "0192:745707327", "direction": "from-econnect", "name": None}),
    ]
    path = write(tmp_path, "batch.jsonl", "\n".join([*good, "", "   ", line, ""]))
    result = validate_file(path)
    assert_only_problem(result, 5, column, why)
    assert result.format == "jsonl" and result.rows == 3


def test_json_key_of_the_wrong_type_is_masked(tmp_path):
    path = write(
        tmp_path,
        "k.jsonl",
        '{"party_id": "0106:12345678", "direction": "inbound", "migration_key": 123456789012}\n',
    )
    (problem,) = validate_file(path).problems
    assert problem.column == "migration_key" and "123456789012" not in str(problem.value)


@pytest.mark.parametrize(
    ("name", "first", "expected"),
    [
        ("a.csv", "{", "csv"),
        ("a.jsonl", "p", "jsonl"),
        ("a.NDJSON", "p", "jsonl"),
        ("a.txt", "\ufeff \n {", "jsonl"),
        ("a.json", "{", "jsonl"),
        ("a.txt", "party_id", "csv"),
        ("noext", "", "csv"),
    ],
)
def test_format_detection(tmp_path, name, first, expected):
    assert detect_format(write(tmp_path, name, first)) == expected


def test_no_key_ever_appears_unmasked(tmp_path):
    rows = [
        f"0192:745707328,to-econnect,{KEY},,,",  # bad id beside a good key
        f"0106:12345670,from-econnect,{KEY},,,",  # key on the wrong direction
        f"0106:12345671,to-econnect,{KEY2} ,,,",  # key with a trailing space
        f"0106:12345672,to-econnect,,{KEY},,",  # a key shifted into the profile column
        f"0106:12345673,sideways,,,,{KEY2}",  # and into new_provider
        f"{KEY},to-econnect,,,,",  # and into party_id
        f"0106:12345674,to-econnect,{KEY},,x,y,z",  # too many fields
    ]
    path = csv_file(tmp_path, *rows, header=HEADER)
    header_leak = csv_file(
        tmp_path, "0106:12345678,inbound", header=f"party_id,direction,{KEY}", name="h.csv"
    )
    jsonl = write(
        tmp_path,
        "k.jsonl",
        "\n".join(
            [
                json.dumps({"party_id": "0106:12345675", "direction": "outbound", "migration_key": KEY}),
                json.dumps(
                    {"party_id": "0106:12345676", "direction": "inbound", "name": f"{KEY2}\tand more"}
                ),
                '{"party_id": "0106:1", "migration_key": "' + KEY + '" oops',
            ]
        ),
    )
    texts = []
    for file in (path, jsonl, header_leak):
        result = validate_file(file)
        assert result.problem_count >= (3 if file != header_leak else 1)
        texts += [
            repr(result),
            *(str(p) for p in result.problems),
            json.dumps([p.as_dict() for p in result.problems]),
        ]
        texts += [str(item) + repr(item) for item in read_rows(file)]
        with pytest.raises(ImportRejected) as info:
            list(iter_valid_rows(file))
        texts += [str(info.value), json.dumps(info.value.problems)]
    blob = "\n".join(texts)
    assert KEY not in blob and KEY2 not in blob
    assert KEY[:4] not in blob and KEY2[:4] not in blob
    assert "11…#D" in blob


def test_valid_rows_do_not_show_the_key_in_repr(tmp_path):
    (row,) = list(read_rows(csv_file(tmp_path, GOOD[0])))
    assert isinstance(row, ImportRow) and row.migration_key == KEY and KEY not in repr(row)


def test_problem_cap_keeps_counting(tmp_path):
    rows = [f"0106:{i},to-econnect,,,," for i in range(50)]
    result = validate_file(csv_file(tmp_path, *rows), max_problems=10)
    assert len(result.problems) == 10 and result.problem_count == 50 and result.truncated
    assert result.problems[0].line == 2


def test_read_rows_is_lazy(tmp_path):
    path = csv_file(tmp_path, *GOOD)
    stream = read_rows(path)
    first = next(stream)
    assert isinstance(first, ImportRow) and first.line == 2
    assert isinstance(Problem(1, None, None, "x"), Problem)


def _big_file(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "big.csv"
    with path.open("w", encoding="utf-8", newline="") as fh:
        fh.write(HEADER + "\r\n")
        for i in range(n):
            if i % 2:
                fh.write(f"0106:{10000000 + i},to-econnect,{KEY},default,Party number {i} B.V.,\r\n")
            else:
                fh.write(f"NL:KVK:{10000000 + i},from-econnect,,,Party number {i} B.V.,provider-{i % 7}\r\n")
    return path


@pytest.mark.slow
def test_streams_a_100k_row_file_without_holding_the_rows(tmp_path):
    n = 100_000
    path = _big_file(tmp_path, n)
    calls = []

    def is_active(ids):
        calls.append(len(list(ids)))
        return set()

    tracemalloc.start()
    try:
        result = validate_file(
            path, default_profile="default", is_active=is_active, known_profiles={"default"}
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok and result.rows == n
    assert result.by_direction == {Direction.TO_ECONNECT: n // 2, Direction.FROM_ECONNECT: n // 2}
    assert result.with_key == n // 2
    assert max(calls) == batch_file.ACTIVE_CHUNK and sum(calls) == n
    # The file is ~7 MB; its rows held as objects take ~40 MB; the set of 100k ids ~11 MB.
    assert path.stat().st_size > 6e6
    assert peak < 20e6, f"validating held {peak / 1e6:.1f} MB"
    assert sum(1 for _ in iter_valid_rows(path, default_profile="default")) == n


def test_bare_carriage_returns_are_explained(tmp_path):
    path = write(tmp_path, "mac.csv", "party_id,direction\r0106:12345678,inbound\r")
    assert_only_problem(validate_file(path), 1, None, "bare carriage return")


def test_unreadable_path_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match=r"cannot read the import file .*missing\.csv"):
        validate_file(tmp_path / "missing.csv")
    with pytest.raises(InputError, match="cannot read"):
        list(read_rows(tmp_path))
