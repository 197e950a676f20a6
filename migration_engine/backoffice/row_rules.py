"""What one row of a batch import file may contain independent of the file format
(``docs/configuration.md``, "Batch files").

``batch_file`` turns CSV or JSON lines into ``{column: text}`` and asks ``check_row``; the
rules live here once so both formats refuse exactly the same rows with the same words.

Decisions worth knowing:
- ``direction`` is ``to-econnect``/``from-econnect`` or ``inbound``/``outbound``, any case.
- A column that belongs to the other direction is an error, not ignored: a key or profile on
  a from-econnect row, or a new_provider on a to-econnect one, usually means the direction
  is wrong, and it is cheaper to say so before anything moves.
- Keys are never stripped: a space anywhere in a key is the error the SML would give later.
- A migration key never appears in a problem unmasked: the ``migration_key`` column is
  always masked with ``keys.mask``, and so is any token of another value that is shaped like
  a valid key, so a shifted column cannot leak one.
- A value with a lone UTF-16 surrogate (JSON allows ``"\\ud800"``) is refused here, not at the
  database: it cannot be encoded as UTF-8, so the writer could never store it, and ``--dry-run``
  must refuse exactly what the real import would. Problems show such a character escaped, so
  printing a report never fails on it either.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from migration_engine import keys
from migration_engine.machine import Direction
from migration_engine.peppol import identifiers

COLUMNS = ("party_id", "direction", "migration_key", "profile", "name", "new_provider", "current_provider")
REQUIRED = ("party_id", "direction")
DIRECTIONS = {
    "to-econnect": Direction.TO_ECONNECT, "inbound": Direction.TO_ECONNECT,
    "from-econnect": Direction.FROM_ECONNECT, "outbound": Direction.FROM_ECONNECT,
}
# Not a PSB limit we know of: long enough for any legal name, short enough to catch a shifted row.
MAX_NAME = 256
SHOWN = 80  # the longest value a problem echoes
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # profiles/NAME.toml: no paths
# new_provider is put into handoff.endpoint's URL: nothing that could change the URL's shape.
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~:-]{0,127}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_KEY_SHAPED = re.compile(r"[^\s,;\"']{8,24}")  # a token that could be a key hiding in another value
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # only a lone one survives decoding: paired ones are combined


@dataclass(frozen=True)
class ImportRow:
    """One valid row. ``party_id`` is canonical; the key is left out of ``repr`` so logs never show it."""

    line: int
    party_id: str
    direction: Direction
    migration_key: str | None = field(repr=False)
    profile: str | None
    name: str | None
    new_provider: str | None
    current_provider: str | None = None  # to-econnect: the provider the file says serves the party now


@dataclass(frozen=True)
class Problem:
    """Why a line (or the header) is refused; ``value`` as written, keys masked. Made by ``problem``."""

    line: int
    column: str | None
    value: str | None
    why: str

    def as_dict(self) -> dict[str, object]:
        return {"line": self.line, "column": self.column, "value": self.value, "why": self.why}

    def __str__(self) -> str:
        where = f", {self.column}" if self.column else ""
        shown = f" {self.value!r}" if self.value is not None else ""
        return f"line {self.line}{where}{shown}: {self.why}"


def problem(line: int, column: str | None, value: object, why: str) -> Problem:
    """The one way problems are made, so no value (nor a header cell) slips past the key masking."""
    if column is not None and column not in COLUMNS:
        column = _escape_surrogates(_hide_keys(column))
    if value is None:
        return Problem(line, column, None, why)
    text = value if isinstance(value, str) else json.dumps(value)
    if column == "migration_key":
        return Problem(line, column, _escape_surrogates(keys.mask(text)), why)
    text = _escape_surrogates(_hide_keys(text))
    return Problem(line, column, text if len(text) <= SHOWN else text[: SHOWN - 1] + "…", why)


def _escape_surrogates(text: str) -> str:
    """A lone surrogate as the ``\\udxxx`` it was written as: a report must print and store as UTF-8."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", text)


def surrogate_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored as UTF-8 (a lone surrogate, and where), or None. Never echoes it."""
    found = _SURROGATE.search(text)
    if found is None:
        return None
    return (
        f"character {found.start() + 1} is \\u{ord(found[0]):04x}, half of a UTF-16 surrogate pair "
        "without its other half: it is not text and cannot be stored"
    )


def _hide_keys(text: str) -> str:
    return _KEY_SHAPED.sub(lambda m: keys.mask(m[0]) if keys.is_valid_key(m[0]) else m[0], text)


@dataclass
class Checked:
    """A data row's outcome: the row, or its problems; ``party_id`` whenever the id itself is valid."""

    line: int
    row: ImportRow | None
    problems: list[Problem]
    party_id: str | None = None


def check_row(line: int, values: dict[str, str], default_profile: str | None, *, strict: bool = True) -> Checked:
    """Validate one row's values; every fault becomes its own problem, so one pass shows them all.

    ``strict=False`` is ``plan``'s reading: the party id's scheme checks and the key's format
    rule become the plan's warnings instead of problems (``import`` stays strict)."""
    problems: list[Problem] = []
    unstorable = {c: why for c, v in values.items() if (why := surrogate_problem(v))}

    def bad(column: str, value: object, why: str) -> None:
        if column not in unstorable:  # reported once below, not again by the column's own rules
            problems.append(problem(line, column, value, why))

    party_text = values.get("party_id", "").strip()
    party_id = None
    if not party_text:
        bad("party_id", None, "the party id is missing or empty")
    else:
        try:
            party_id = identifiers.parse(party_text, strict=strict).canonical
        except identifiers.InvalidParticipantId as exc:
            bad("party_id", party_text, exc.reason)

    direction_text = values.get("direction", "").strip()
    direction = DIRECTIONS.get(direction_text.lower())
    if direction is None:
        what = "unknown" if direction_text else "missing or empty"
        bad("direction", direction_text or None, f"the direction is {what}: use to-econnect or from-econnect")
    inbound, outbound = direction is Direction.TO_ECONNECT, direction is Direction.FROM_ECONNECT

    key = values.get("migration_key") or None
    if key is not None:
        if outbound:
            bad("migration_key", key, "a key belongs on to-econnect rows; eConnect issues from-econnect keys")
        elif strict and (why := keys.key_problem(key)):
            bad("migration_key", key, why)

    profile = values.get("profile", "").strip() or None
    if profile is not None:
        if outbound:
            bad("profile", profile, "a profile applies to to-econnect rows only")
        elif not _PROFILE.fullmatch(profile):
            bad("profile", profile, "a profile name is letters, digits, - and _ (profiles/NAME.toml)")
    elif inbound:
        profile = default_profile

    name = values.get("name", "").strip() or None
    if name is not None:
        if len(name) > MAX_NAME:
            bad("name", name, f"the name has {len(name)} characters; at most {MAX_NAME}")
        elif _CONTROL.search(name):
            bad("name", name, "the name contains a control character (line break, tab, ...)")

    provider = values.get("new_provider", "").strip() or None
    if provider is not None:
        if inbound:
            bad("new_provider", provider, "new_provider applies to from-econnect rows only")
        elif not _PROVIDER.fullmatch(provider):
            bad("new_provider", provider, "it goes into the handoff URL: letters, digits and - . _ ~ : only")

    current = values.get("current_provider", "").strip() or None
    if current is not None:
        if outbound:
            bad("current_provider", current, "current_provider applies to to-econnect rows only (see new_provider)")
        elif not _PROVIDER.fullmatch(current):
            bad("current_provider", current, "a provider name is letters, digits and - . _ ~ : only")

    problems += [problem(line, c, values[c], why) for c, why in unstorable.items()]
    if problems or party_id is None or direction is None:
        return Checked(line, None, problems, party_id)
    row = ImportRow(line, party_id, direction, key, profile if inbound else None, name, provider, current)
    return Checked(line, row, [], party_id)
