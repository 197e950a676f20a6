"""Peppol participant identifiers: parsing, validating and normalising to one canonical form.

Canonical form: ``ICD:value`` with the value lower-cased (Peppol POLICY 2: participant
values are case-insensitive; peppol-commons stores them "unified" the same way), e.g.
``NL:KVK:12345678`` and ``iso6523-actorid-upis::0106:12345678`` both become ``0106:12345678``.
One form matters because duplicates in an import file, the store's "one open migration per
party" rule and the PSB's own lookups must all agree on when two ids are the same party.

Accepted notations (``docs/psb-contract.md``, "Party identifiers"):
``ICD:value``, ``iso6523-actorid-upis::ICD:value`` and
the PSB's text aliases (``NL:KVK:value``, also behind the scheme prefix). Aliases are matched
in any case, like the PSB does. The scheme prefix is matched exactly: PFUOI POLICY 5 makes
``iso6523-actorid-upis`` case-sensitive, so ``ISO6523-ACTORID-UPIS::...`` names a scheme
Peppol does not know, and we say so rather than guess what the file meant.

Validation, in the order a person would fix things: syntax, known ICD (code list 9.7; the
SML refuses an unknown "issuing agency"), a removed or unregistrable scheme, characters, the
PFUOI 4.4 length limit, then the scheme's own format and check digits. The checks are the
Peppol BIS PEPPOL-COMMON rules (``docs/peppol-network.md``, "Participant identifiers")
plus the code list's rules for 9925, 0199 and
0211; schemes without a published rule get only the generic checks, since refusing a party
the SML accepts would block a whole all-or-nothing import.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from migration_engine import keys
from migration_engine.errors import InputError

SCHEME = "iso6523-actorid-upis"
CODE_LIST_VERSION = "9.7"
# PFUOI 4.4: 4-digit ICD + ":" + at most 130 characters (PeppolIdentifierHelper.
# MAX_PARTICIPANT_VALUE_LENGTH). PFUOI 4.0-4.3 allowed only 50; the newer limit wins.
MAX_LENGTH = 135

# The Peppol "Participant identifier schemes" code list v9.7 (OpenPEPPOL/edec-codelists),
# kept as data: ICD, scheme id (also the PSB text alias), state, and the removal date or
# "unregistrable" (0205: "CAN NOT be registered in the SMP/SML").
_CODE_LIST = """
0002 FR:SIRENE active      | 0007 SE:ORGNR active        | 0009 FR:SIRET active
0037 FI:OVT removed 2024-12-31                            | 0060 DUNS active
0088 GLN active            | 0096 DK:P active            | 0097 IT:FTI active
0106 NL:KVK active         | 0130 EU:NAL active          | 0135 IT:SIA active
0142 IT:SECETI active      | 0151 AU:ABN active          | 0158 SK:ICO active
0183 CH:UIDB active        | 0184 DK:DIGST active        | 0188 JP:SST active
0190 NL:OINO active        | 0191 EE:CC active           | 0192 NO:ORG active
0193 UBLBE deprecated      | 0195 SG:UEN active          | 0196 IS:KTNR active
0198 DK:ERST active        | 0199 LEI active             | 0200 LT:LEC active
0201 IT:CUUO active        | 0204 DE:LWID active         | 0205 IT:COD unregistrable
0208 BE:EN active          | 0209 GS1 active             | 0210 IT:CFI active
0211 IT:IVA active         | 0212 FI:ORG removed 2024-12-31 | 0213 FI:VAT removed 2024-12-31
0215 FI:NSI removed 2024-12-31 | 0216 FI:OVT2 active     | 0218 LV:URN active
0221 JP:IIN active         | 0225 FR:CTC active          | 0230 MY:EIF active
0235 AE:TIN active         | 0240 LU:MAT active          | 0242 SPIS active
0244 NG:TID active         | 0245 SK:DIC active          | 0246 DE:GEBA active
0248 OM:VAT active
9901 DK:CPR removed 2023-11-30 | 9902 DK:CVR removed 2023-11-30 | 9904 DK:SE removed 2023-11-30
9905 DK:VANS removed 2023-11-30 | 9906 IT:VAT removed 2023-05-24 | 9907 IT:CF removed 2023-05-24
9908 NO:ORGNR removed 2023-05-24 | 9909 NO:VAT deprecated | 9910 HU:VAT active
9912 EU:VAT deprecated     | 9913 EU:REID active         | 9914 AT:VAT active
9915 AT:GOV active         | 9916 AT:CID deprecated      | 9917 IS:KT deprecated
9918 IBAN active           | 9919 AT:KUR active          | 9920 ES:VAT active
9921 IT:IPA removed 2023-11-30                           | 9922 AD:VAT active
9923 AL:VAT active         | 9924 BA:VAT active          | 9925 BE:VAT active
9926 BG:VAT active         | 9927 CH:VAT active          | 9928 CY:VAT active
9929 CZ:VAT active         | 9930 DE:VAT active          | 9931 EE:VAT active
9932 GB:VAT active         | 9933 GR:VAT active          | 9934 HR:VAT active
9935 IE:VAT active         | 9936 LI:VAT active          | 9937 LT:VAT active
9938 LU:VAT active         | 9939 LV:VAT active          | 9940 MC:VAT active
9941 ME:VAT active         | 9942 MK:VAT active          | 9943 MT:VAT active
9944 NL:VAT active         | 9945 PL:VAT active          | 9946 PT:VAT active
9947 RO:VAT active         | 9948 RS:VAT active          | 9949 SI:VAT active
9950 SK:VAT active         | 9951 SM:VAT active          | 9952 TR:VAT active
9953 VA:VAT active         | 9954 NL:OIN removed 2026-03-31 | 9955 SE:VAT removed 2023-07-31
9956 BE:CBE removed 2023-12-31 | 9957 FR:VAT active      | 9958 DE:LID removed 2023-07-31
9959 US:EIN active
"""


@dataclass(frozen=True)
class Scheme:
    """One row of the code list. ``registrable`` is False for removed and unregistrable schemes."""

    icd: str
    scheme_id: str
    state: str  # active | deprecated | removed | unregistrable
    removed_on: str | None = None

    @property
    def registrable(self) -> bool:
        return self.state in ("active", "deprecated")


def _load(table: str) -> dict[str, Scheme]:
    schemes: dict[str, Scheme] = {}
    for cell in table.replace("\n", "|").split("|"):
        if fields := cell.split():
            icd, scheme_id, state, *removed = fields
            schemes[icd] = Scheme(icd, scheme_id, state, removed[0] if removed else None)
    return schemes


SCHEMES: dict[str, Scheme] = _load(_CODE_LIST)
# PSB text aliases (``docs/psb-contract.md``, "Party identifiers") -> ICD: the scheme ids of the code list.
ALIASES: dict[str, str] = {s.scheme_id: s.icd for s in SCHEMES.values()}

# Removed schemes whose code-list entry names the scheme that replaced them.
_SUCCESSORS = {"0037": "0216", "9902": "0184", "9906": "0211", "9907": "0210", "9908": "0192",
               "9954": "0190", "9956": "0208", "9958": "0204"}

_BAD_VALUE_CHAR = re.compile(r"[^A-Za-z0-9\-._~]")


class InvalidParticipantId(InputError):
    """A participant id that cannot be used; ``reason`` says why without repeating the id."""

    def __init__(self, text: str, reason: str) -> None:
        # The message may reach a terminal: a key typed where an id belongs stays masked.
        shown = keys.mask(text) if keys.is_valid_key(text.strip()) else text[:80]
        super().__init__(f"participant id {shown!r}: {reason}")
        self.text = text
        self.reason = reason


@dataclass(frozen=True)
class ParticipantId:
    """A validated Peppol participant id. ``value`` is already lower-cased (POLICY 2)."""

    icd: str
    value: str

    @property
    def canonical(self) -> str:
        """``ICD:value``: the one form stored, compared and sent to the PSB."""
        return f"{self.icd}:{self.value}"

    @property
    def scheme(self) -> Scheme:
        """The code-list row of the ICD (scheme id such as ``NL:KVK``, state)."""
        return SCHEMES[self.icd]

    def __str__(self) -> str:
        return self.canonical


# --- scheme-specific rules -----------------------------------------------------------
# Each rule gets the value upper-cased and returns why it is wrong, or None.


def _not_digits(value: str, count: int, what: str) -> str | None:
    if len(value) == count and value.isascii() and value.isdigit():
        return None
    if value.isascii() and value.isdigit():
        return f"{what} is {count} digits; this value has {len(value)}"
    return f"{what} is {count} digits, without letters or separators"


def _luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _gln(v: str) -> str | None:
    if why := _not_digits(v, 13, "a GLN (0088)"):
        return why
    total = sum(int(ch) * (3 if i % 2 == 0 else 1) for i, ch in enumerate(reversed(v[:12])))
    check = (10 - total % 10) % 10
    if check != int(v[12]):
        return f"fails the GLN check digit (mod 10, weights 3,1 from the right): expected {check}"
    return None


def _no_org(v: str) -> str | None:
    if why := _not_digits(v, 9, "a Norwegian organisation number (0192)"):
        return why
    rest = sum(int(ch) * w for ch, w in zip(v[:8], (3, 2, 7, 6, 5, 4, 3, 2), strict=True)) % 11
    check = 0 if rest == 0 else 11 - rest
    if check == 10:
        return "fails the NO:ORG check digit (mod 11): no organisation number starts with these 8 digits"
    if check != int(v[8]):
        return f"fails the NO:ORG check digit (mod 11, weights 3,2,7,6,5,4,3,2): expected {check}"
    return None


def _be_en(v: str, what: str = "a Belgian enterprise number (0208)") -> str | None:
    if why := _not_digits(v, 10, what):
        return why
    if v[0] not in "01":
        return f"{what} starts with 0 or 1, not {v[0]}"
    check = 97 - int(v[:8]) % 97
    if check != int(v[8:]):
        return f"fails the Belgian check digits (97 - first 8 digits mod 97): expected {check:02d}"
    return None


def _be_vat(v: str) -> str | None:
    # peppol-commons ParticipantIdentifierValidatorBelgium: 9925 carries the "BE" prefix, 0208 not.
    if not v.startswith("BE"):
        return "a Belgian VAT number (9925) is BE followed by the 10-digit enterprise number"
    return _be_en(v[2:], "the enterprise number after BE (9925)")


def _se_orgnr(v: str) -> str | None:
    if why := _not_digits(v, 10, "a Swedish organisation number (0007)"):
        return why
    return None if _luhn_ok(v) else "fails the SE:ORGNR check digit (Luhn on the 10th digit)"


def _au_abn(v: str) -> str | None:
    if why := _not_digits(v, 11, "an Australian Business Number (0151)"):
        return why
    weights = (10, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19)
    digits = [int(ch) for ch in v]
    digits[0] -= 1
    if sum(d * w for d, w in zip(digits, weights, strict=True)) % 89:
        return "fails the ABN check (weighted sum mod 89 must be 0)"
    return None


def _dk_cvr(v: str) -> str | None:
    if why := _not_digits(v, 8, "a Danish CVR number (0184)"):
        return why
    if v[0] == "0":
        return "a Danish CVR number (0184) does not start with 0"
    if sum(int(ch) * w for ch, w in zip(v, (2, 7, 6, 5, 4, 3, 2, 1), strict=True)) % 11:
        return "fails the CVR check (mod 11, weights 2,7,6,5,4,3,2,1)"
    return None


def _lei(v: str) -> str | None:
    if not re.fullmatch(r"[A-Z0-9]{18}[0-9]{2}", v):
        return "a LEI (0199) is 18 letters or digits followed by 2 check digits (20 characters)"
    if int("".join(str(int(ch, 36)) for ch in v)) % 97 != 1:
        return "fails the LEI check digits (ISO 7064 mod 97-10)"
    return None


def _it_iva(v: str) -> str | None:
    if not re.fullmatch(r"IT[0-9]{11}", v):
        return "an Italian VAT number (0211) is IT followed by 11 digits"
    return None if _luhn_ok(v[2:]) else "fails the Partita IVA check digit (Luhn on the 11th digit)"


_RULES: dict[str, Callable[[str], str | None]] = {
    "0007": _se_orgnr,
    "0088": _gln,
    "0106": lambda v: _not_digits(v, 8, "a KvK number (0106)"),  # no check digit in use
    "0151": _au_abn,
    "0184": _dk_cvr,
    "0190": lambda v: _not_digits(v, 20, "an OIN (0190)"),  # no check digit by design
    "0192": _no_org,
    "0199": _lei,
    "0208": _be_en,
    "0211": _it_iva,
    "9925": _be_vat,
}
CHECKED_ICDS = frozenset(_RULES)


def _split(text: str) -> tuple[str, str]:
    """``(icd, value)`` from any accepted notation; raises with the precise syntax fault."""
    raw = text.strip()
    if not raw:
        raise InvalidParticipantId(text, "the participant id is empty")
    if "::" in raw:
        scheme, _, raw = raw.partition("::")
        if scheme != SCHEME:
            if scheme.lower() == SCHEME:
                why = f"the identifier scheme is case-sensitive (PFUOI POLICY 5): write {SCHEME}::"
            else:
                why = f"unknown identifier scheme {scheme!r}: Peppol participants use {SCHEME}::"
            raise InvalidParticipantId(text, why)
    if ":" not in raw:
        raise InvalidParticipantId(text, "no colon: expected ICD:value such as 0106:12345678")
    icd, _, value = raw.partition(":")
    if len(icd) == 4 and icd.isascii() and icd.isdigit():
        return icd, value
    # A text alias is one or two segments (GLN:x, NL:KVK:x), in any case; the longer wins.
    second, colon, rest = value.partition(":")
    pair = f"{icd}:{second}".upper()
    if colon and pair in ALIASES:
        return ALIASES[pair], rest
    if icd.upper() in ALIASES:
        return ALIASES[icd.upper()], value
    if pair in ALIASES:
        raise InvalidParticipantId(text, f"no value after the scheme {pair}")
    raise InvalidParticipantId(text, f"the ICD {icd!r} is not 4 digits (nor a scheme alias such as NL:KVK)")


def parse(text: str, *, strict: bool = True) -> ParticipantId:
    """Validate a participant id in any accepted notation; raise ``InvalidParticipantId`` with why.

    ``strict=False`` (``plan`` reading a batch file) skips the scheme checks: a removed or
    unregistrable scheme and the scheme's own format and check digits (``value_problem``),
    which the plan reports as its classes. The syntax, a known ICD, the characters and the
    length are checked either way.
    """
    icd, value = _split(text)
    scheme = SCHEMES.get(icd)
    if scheme is None:
        raise InvalidParticipantId(
            text, f"unknown ICD {icd}: not in the Peppol participant identifier code list {CODE_LIST_VERSION}"
        )
    if strict and not scheme.registrable:
        when = f" on {scheme.removed_on}" if scheme.removed_on else ""
        status = "was removed from the code list" if scheme.state == "removed" else "cannot be registered"
        instead = f"; use {_SUCCESSORS[icd]} instead" if icd in _SUCCESSORS else ""
        raise InvalidParticipantId(text, f"ICD {icd} ({scheme.scheme_id}) {status}{when}{instead}")
    if not value:
        raise InvalidParticipantId(text, f"the value after {icd}: is empty")
    if bad := _BAD_VALUE_CHAR.search(value):
        raise InvalidParticipantId(
            text,
            f"character {bad.group()!r} at position {bad.start() + 1} of the value is not allowed; "
            "only letters A-Z a-z, digits and - . _ ~",
        )
    if len(icd) + 1 + len(value) > MAX_LENGTH:
        raise InvalidParticipantId(
            text,
            f"{len(icd) + 1 + len(value)} characters as ICD:value; PFUOI 4.4 allows at most {MAX_LENGTH}",
        )
    rule = _RULES.get(icd)
    if strict and rule is not None and (why := rule(value.upper())):
        raise InvalidParticipantId(text, why)
    return ParticipantId(icd, value.lower())


def value_problem(pid: ParticipantId) -> str | None:
    """Why ``pid``'s value breaks its scheme's own format or check digits, or None."""
    rule = _RULES.get(pid.icd)
    return rule(pid.value.upper()) if rule is not None else None


def successor(icd: str) -> str | None:
    """The ICD the code list names as the replacement of a removed scheme, if any."""
    return _SUCCESSORS.get(icd)


def canonical(text: str) -> str:
    """The canonical ``ICD:value`` of a participant id in any accepted notation (fully validated)."""
    return parse(text).canonical


_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")


def parse_lenient(text: str) -> tuple[ParticipantId, tuple[str, ...]]:
    """A participant id as far as the Peppol syntax goes, with the scheme checks as warnings.

    For ``lookup`` and the preflight, which must compute DNS names and ask the network about
    any identifier a sender could use: the notation must parse (``[iso6523-actorid-upis::]ICD:value``
    or a text alias), the value must be non-empty, without spaces or control characters and
    within PFUOI 4.4's length. An unknown or removed ICD, characters outside BIS's set and a
    failed scheme rule (check digits, length) become warnings. Import stays strict (``parse``).
    """
    icd, value = _split(text)
    if not value:
        raise InvalidParticipantId(text, f"the value after {icd}: is empty")
    if bad := _CONTROL_OR_SPACE.search(value):
        where = f"position {bad.start() + 1} of the value"
        raise InvalidParticipantId(text, f"character {bad.group()!r} at {where} is a space or control character")
    if len(icd) + 1 + len(value) > MAX_LENGTH:
        raise InvalidParticipantId(
            text, f"{len(icd) + 1 + len(value)} characters as ICD:value; PFUOI 4.4 allows at most {MAX_LENGTH}"
        )
    warnings: list[str] = []
    scheme = SCHEMES.get(icd)
    if scheme is None:
        warnings.append(f"unknown ICD {icd}: not in the Peppol participant identifier code list {CODE_LIST_VERSION}")
    elif not scheme.registrable:
        when = f" on {scheme.removed_on}" if scheme.removed_on else ""
        status = "was removed from the code list" if scheme.state == "removed" else "cannot be registered"
        instead = f"; use {_SUCCESSORS[icd]} instead" if icd in _SUCCESSORS else ""
        warnings.append(f"ICD {icd} ({scheme.scheme_id}) {status}{when}{instead}")
    elif scheme.state == "deprecated":
        warnings.append(f"ICD {icd} ({scheme.scheme_id}) is deprecated in the code list {CODE_LIST_VERSION}")
    if bad := _BAD_VALUE_CHAR.search(value):
        warnings.append(f"character {bad.group()!r} of the value is outside A-Z a-z 0-9 - . _ ~")
    rule = _RULES.get(icd)
    if rule is not None and not _BAD_VALUE_CHAR.search(value) and (why := rule(value.upper())):
        warnings.append(why)
    return ParticipantId(icd, value.lower()), tuple(warnings)
