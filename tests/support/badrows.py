"""A batch file with one bad row of each kind between good ones, as bytes, with what to expect.

Used by the acceptance test of ``import`` refusing bad rows. Every bad row is a different mistake a service desk makes
(or a spreadsheet makes for it); each ``Bad`` says which column the report must name.
The file is written with a UTF-8 BOM and CRLF line ends, as Excel's "CSV UTF-8" saves it:
both are accepted, so only the bad rows are reported, on the right lines.
"""

from __future__ import annotations

from dataclasses import dataclass

HEADER = "party_id,direction,migration_key,profile,name,new_provider"
KEY = "11AAbb$$11AAbb$$"  # valid format: 2 upper, 2 lower, 2 digits, 2 specials
OTHER_KEY = "22CCdd##22CCdd##"


@dataclass(frozen=True)
class Bad:
    kind: str
    line: bytes  # the row as written (without the line end)
    column: str | None  # the column the report must name (None: the whole line)
    why: str = ""  # what the report's reason must say: it tells this kind from the others


def good_id(i: int) -> str:
    return f"0106:{70000000 + i:08d}"


def _gln_with_wrong_check() -> str:
    body = "871234567890"
    total = sum(int(ch) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(body)))
    return f"0088:{body}{((10 - total % 10) % 10 + 1) % 10}"


def _no_org_with_wrong_check() -> str:
    body = "92345678"
    rest = sum(int(ch) * w for ch, w in zip(body, (3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    check = 0 if rest == 0 else 11 - rest
    return f"0192:{body}{(check + 1) % 10}"


def _be_with_wrong_check() -> str:
    body = "04035784"
    return f"0208:{body}{(97 - int(body) % 97 + 1) % 100:02d}"


def bad_rows(active_party: str, duplicated_party: str) -> list[Bad]:
    """One bad row per kind. ``duplicated_party`` is a good row's id (``0106:...``) earlier in the file."""
    kvk_digits = duplicated_party.split(":")[1]
    rows = [
        # ---- the party id ----
        Bad("unknown ICD", b"9999:12345678,to-econnect,,,,", "party_id", "unknown ICD 9999"),
        Bad("ICD not 4 digits", b"106:12345678,to-econnect,,,,", "party_id", "the ICD '106' is not 4 digits"),
        Bad("unknown scheme alias", b"XX:FOO:12345678,to-econnect,,,,", "party_id",
            "the ICD 'XX' is not 4 digits (nor a scheme alias",
        ),
        Bad("scheme prefix in the wrong case", b"ISO6523-ACTORID-UPIS::0106:12345678,to-econnect,,,,", "party_id",
            "the identifier scheme is case-sensitive",
        ),
        Bad("scheme removed from the code list", b"9956:0403578422,from-econnect,,,,", "party_id",
            "ICD 9956 (BE:CBE) was removed from the code list",
        ),
        Bad("scheme that cannot be registered", b"0205:12345678,from-econnect,,,,", "party_id",
            "ICD 0205 (IT:COD) cannot be registered",
        ),
        Bad("GLN check digit", f"{_gln_with_wrong_check()},to-econnect,,,,".encode(), "party_id",
            "fails the GLN check digit",
        ),
        Bad("NO:ORG check digit", f"{_no_org_with_wrong_check()},from-econnect,,,,".encode(), "party_id",
            "fails the NO:ORG check digit",
        ),
        Bad("Belgian enterprise number check", f"{_be_with_wrong_check()},from-econnect,,,,".encode(), "party_id",
            "fails the Belgian check digits",
        ),
        Bad("LEI check digits", b"0199:529900T8BM49AURSDO56,from-econnect,,,,", "party_id",
            "fails the LEI check digits",
        ),
        Bad("KvK number with 9 digits", b"0106:123456789,to-econnect,,,,", "party_id",
            "a KvK number (0106) is 8 digits; this value has 9",
        ),
        Bad("empty party id", b",to-econnect,,,,", "party_id", "the party id is missing or empty"),
        Bad("party id without a colon", b"12345678,to-econnect,,,,", "party_id", "no colon"),
        Bad("nothing after the ICD", b"0106:,to-econnect,,,,", "party_id", "the value after 0106: is empty"),
        Bad("party id longer than 135", ("0088:" + "1" * 140 + ",to-econnect,,,,").encode(), "party_id",
            "145 characters as ICD:value; PFUOI 4.4 allows at most 135",
        ),
        Bad("space inside the party id", b"0106:1234 5678,to-econnect,,,,", "party_id",
            "character ' ' at position 5 of the value is not allowed",
        ),
        Bad("BOM inside the file (files pasted together)", "\ufeff0106:71000001,to-econnect,,,,".encode(), "party_id",
            "the ICD '\\ufeff0106' is not 4 digits",
        ),
        # ---- the direction ----
        Bad("unknown direction", b"0106:71000002,sideways,,,,", "direction", "the direction is unknown"),
        Bad("empty direction", b"0106:71000003,,,,,", "direction", "the direction is missing or empty"),
        # ---- the key ----
        Bad("weak key", b"0106:71000004,to-econnect,password,,,", "migration_key",
            "the migration key needs at least 2 upper-case letters",
        ),
        Bad("key with a space", b"0106:71000005,to-econnect,11AA bb$$11AA,,,", "migration_key",
            "the migration key contains white space",
        ),
        Bad("key too short", b"0106:71000006,to-econnect,1A$b,,,", "migration_key",
            "the migration key has 4 characters; the SML needs at least 8",
        ),
        Bad("key too long", b"0106:71000007,to-econnect,11AAbb$$11AAbb$$11AAbb$$1,,,", "migration_key",
            "the migration key has 25 characters; the SML allows at most 24",
        ),
        Bad("key without special characters", b"0106:71000008,to-econnect,11AAbbcc11AAbbcc,,,", "migration_key",
            "the migration key needs at least 2 special characters",
        ),
        Bad("key on a from-econnect row", f"0106:71000009,from-econnect,{OTHER_KEY},,,".encode(), "migration_key",
            "a key belongs on to-econnect rows",
        ),
        # ---- profile, provider, name ----
        Bad("profile on a from-econnect row", b"0106:71000010,from-econnect,,default,,", "profile",
            "a profile applies to to-econnect rows only",
        ),
        Bad("new_provider on a to-econnect row", b"0106:71000011,to-econnect,,,,provider-b", "new_provider",
            "new_provider applies to from-econnect rows only",
        ),
        Bad("unknown profile", b"0106:71000012,to-econnect,,nosuchprofile,,", "profile", "unknown profile"),
        Bad("profile that is a path", b"0106:71000013,to-econnect,,../default,,", "profile",
            "a profile name is letters, digits, - and _",
        ),
        Bad("new_provider bending the handoff URL", b"0106:71000014,from-econnect,,,,evil/../x", "new_provider",
            "it goes into the handoff URL",
        ),
        Bad("name longer than 256", ("0106:71000015,to-econnect,,," + "N" * 300 + ",").encode(), "name",
            "the name has 300 characters; at most 256",
        ),
        Bad("name with a tab in it", b'0106:71000016,to-econnect,,,"Acme\tB.V.",', "name",
            "the name contains a control character",
        ),
        # ---- the file's rows ----
        Bad("duplicate party in the file", f"{duplicated_party},from-econnect,,,,".encode(), "party_id",
            "duplicate: the party is also on line 2",
        ),
        Bad("duplicate in another notation", f"NL:KVK:{kvk_digits},from-econnect,,,,".encode(), "party_id",
            "duplicate: the party is also on line 2",
        ),
        Bad("party that already has an open migration", f"{active_party},from-econnect,,,,".encode(), "party_id",
            "the party already has an open migration",
        ),
        Bad("not UTF-8 (a Latin-1 name)", b"0106:71000017,to-econnect,,,Caf\xe9 De Kroon,", None,
            "not UTF-8 (byte 0xe9 at position 32)",
        ),
        Bad("extra field in the row", b"0106:71000018,to-econnect,,,Acme,,surplus", None, "7 fields, the header has 6"),
        Bad("missing fields in the row", b"0106:71000019,to-econnect,,", None, "4 fields, the header has 6"),
        Bad("bare carriage return (old Mac line end)", b"0106:71000020,to-econnect,,,Acme\rB.V.,", None,
            "a line break is a bare carriage return",
        ),
        Bad("NUL byte in the row", b"0106:71000021,to-econnect,,,Acme\x00,", "name",
            "the name contains a control character",
        ),
        Bad("JSON line in a CSV file", b'{"party_id": "0106:71000022"}', None, "1 fields, the header has 6"),
    ]
    return rows


def good_row(i: int) -> bytes:
    if i % 2:
        return f"{good_id(i)},from-econnect,,,Good {i},provider-b".encode()
    return f"{good_id(i)},to-econnect,{KEY},default,Good {i},".encode()


def build(active_party: str) -> tuple[bytes, dict[int, Bad], list[int], bytes]:
    """The file; bad rows by line number; the good rows' line numbers; the file without its bad rows."""
    bad = bad_rows(active_party, good_id(0))
    lines: list[bytes] = [HEADER.encode()]
    good_lines: list[int] = []
    by_line: dict[int, Bad] = {}
    g = 0
    for item in bad:
        lines.append(good_row(g))
        good_lines.append(len(lines))
        g += 1
        lines.append(item.line)
        by_line[len(lines)] = item
    lines.append(good_row(g))
    good_lines.append(len(lines))
    # An unclosed quote swallows what follows it, so it comes last.
    # It is read as one row of 5 fields (the quote runs to the end of the file).
    unclosed = Bad("unclosed quote", b'0106:71000023,to-econnect,,,"Acme, B.V.,', None, "5 fields, the header has 6")
    lines.append(unclosed.line)
    by_line[len(lines)] = unclosed
    body = b"\xef\xbb\xbf" + b"\r\n".join(lines) + b"\r\n"
    clean = b"\xef\xbb\xbf" + b"\r\n".join(lines[i - 1] for i in [1, *good_lines]) + b"\r\n"
    return body, by_line, good_lines, clean
