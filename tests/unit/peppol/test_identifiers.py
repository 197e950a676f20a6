"""Participant ids: notations, the code list, PFUOI syntax and the per-scheme check digits."""

import random

import pytest

from migration_engine.errors import InputError
from migration_engine.peppol import identifiers
from migration_engine.peppol.identifiers import (
    ALIASES,
    CHECKED_ICDS,
    SCHEMES,
    InvalidParticipantId,
    ParticipantId,
    canonical,
    parse,
)

# The valid examples of the Peppol identifier rules and the PSB's notations
# (docs/peppol-network.md, docs/psb-contract.md), plus code-list examples.
VALID = [
    "0088:7300010000001",
    "0088:1548079098355",
    "0192:745707327",
    "0208:0899965307",
    "0007:5566261920",
    "0007:2120000787",
    "0190:00000001820029336000",
    "0190:00000004000000000000",
    "0151:51824753556",
    "0184:13585628",
    "0106:12345678",
    "9925:BE0899965307",
    "0211:IT06363391001",
    "9944:NL12345678B01",
    "9946:PT123456789",
    "0204:991-01234-56",
    "0060:812810734",
]


def _why(text: str) -> str:
    with pytest.raises(InvalidParticipantId) as info:
        parse(text)
    return info.value.reason


@pytest.mark.parametrize("text", VALID)
def test_reference_examples_are_valid(text):
    pid = parse(text)
    assert pid.canonical == text.lower()
    assert canonical(text) == text.lower()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("NL:KVK:12345678", "0106:12345678"),
        ("nl:kvk:12345678", "0106:12345678"),
        ("iso6523-actorid-upis::NL:KVK:12345678", "0106:12345678"),
        ("iso6523-actorid-upis::0106:12345678", "0106:12345678"),
        ("  0106:12345678 \t", "0106:12345678"),
        ("NO:ORG:745707327", "0192:745707327"),
        ("BE:EN:0899965307", "0208:0899965307"),
        ("DK:DIGST:13585628", "0184:13585628"),
        ("SE:ORGNR:5566261920", "0007:5566261920"),
        ("FR:SIRET:78430177200025", "0009:78430177200025"),
        ("FR:SIRENE:784301772", "0002:784301772"),
        ("IT:CFI:RSSBBR69C48F839A", "0210:rssbbr69c48f839a"),
        ("IT:IVA:IT06363391001", "0211:it06363391001"),
        ("DE:VAT:DE123456789", "9930:de123456789"),
        ("FR:VAT:FR12345678901", "9957:fr12345678901"),
        ("BE:VAT:BE0899965307", "9925:be0899965307"),
        ("NL:VAT:NL12345678B01", "9944:nl12345678b01"),
        ("NL:OINO:00000001003214345000", "0190:00000001003214345000"),
        ("GLN:7300010000001", "0088:7300010000001"),
        ("DUNS:812810734", "0060:812810734"),
        ("AU:ABN:51824753556", "0151:51824753556"),
        ("DK:P:1234567890", "0096:1234567890"),
        ("FI:OVT2:003704944842TST01", "0216:003704944842tst01"),
    ],
)
def test_every_notation_gives_the_canonical_form(text, expected):
    assert canonical(text) == expected


def test_participant_id_record():
    pid = parse("NL:KVK:12345678")
    assert pid == ParticipantId("0106", "12345678")
    assert pid.scheme.scheme_id == "NL:KVK" and pid.scheme.state == "active"
    assert str(pid) == "0106:12345678"
    with pytest.raises(AttributeError):
        pid.icd = "0088"  # type: ignore[misc]


def test_values_are_case_insensitive_so_ids_compare_equal():
    assert parse("9944:NL12345678B01") == parse("NL:VAT:nl12345678b01")


def test_canonical_is_idempotent():
    for text in VALID:
        assert canonical(canonical(text)) == canonical(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("12345678", "no colon"),
        ("106:12345678", "ICD '106' is not 4 digits"),
        ("01060:12345678", "not 4 digits"),
        ("XX:YY:1", "not 4 digits (nor a scheme alias"),
        ("١٢٣٤:1", "not 4 digits"),
        ("1234:5", "unknown ICD 1234"),
        ("0000:5", "unknown ICD 0000"),
        ("NL:KVK", "no value after the scheme NL:KVK"),
        ("0106:", "the value after 0106: is empty"),
        ("NL:KVK:", "the value after 0106: is empty"),
        ("0106:1234 5678", "character ' ' at position 5"),
        ("0106:123:456", "character ':'"),
        ("9944:NL12345678B01é", "character 'é'"),
        ("9944:a/b", "character '/'"),
        ("ISO6523-ACTORID-UPIS::0106:12345678", "case-sensitive"),
        ("urn:foo::0106:12345678", "unknown identifier scheme 'urn:foo'"),
        ("9902:13585628", "ICD 9902 (DK:CVR) was removed from the code list on 2023-11-30; use 0184"),
        ("9956:0899965307", "removed from the code list on 2023-12-31; use 0208"),
        ("FI:OVT:003712345678", "use 0216"),
        ("0205:ABC1234", "ICD 0205 (IT:COD) cannot be registered"),
    ],
)
def test_syntax_and_code_list_faults_say_why(text, why):
    assert why in _why(text)


def test_pfuoi_4_4_length_limit():
    assert parse("9944:" + "a" * 130).canonical == "9944:" + "a" * 130  # 135 characters
    assert "136 characters" in _why("9944:" + "a" * 131)
    assert "at most 135" in _why("iso6523-actorid-upis::9944:" + "a" * 131)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("0088:7300010000002", "GLN check digit (mod 10, weights 3,1 from the right): expected 1"),
        ("0088:730001000000", "GLN (0088) is 13 digits; this value has 12"),
        ("0088:73000100000A1", "13 digits, without letters"),
        ("0192:745707328", "NO:ORG check digit (mod 11, weights 3,2,7,6,5,4,3,2): expected 7"),
        ("0192:74570732", "9 digits; this value has 8"),
        ("0192:000000060", "no organisation number starts with these 8 digits"),
        ("0208:0899965308", "97 - first 8 digits mod 97): expected 07"),
        ("0208:2899965307", "starts with 0 or 1, not 2"),
        ("0208:899965307", "10 digits; this value has 9"),
        ("0208:BE0899965307", "10 digits, without letters"),
        ("9925:0899965307", "BE followed by the 10-digit enterprise number"),
        ("9925:BE0899965308", "expected 07"),
        ("0007:5566261921", "Luhn"),
        ("0007:556626192", "10 digits; this value has 9"),
        ("0151:51824753557", "mod 89"),
        ("0190:0000000182002933600", "OIN (0190) is 20 digits; this value has 19"),
        ("0106:1234567", "KvK number (0106) is 8 digits; this value has 7"),
        ("0106:NL12345678", "8 digits, without letters"),
        ("0184:13585629", "mod 11, weights 2,7,6,5,4,3,2,1"),
        ("0184:03585628", "does not start with 0"),
        ("0184:1358562", "8 digits"),
        ("0199:529900T8BM49AURSDO5", "20 characters"),
        ("0199:529900T8BM49AURSDO56", "mod 97-10"),
        ("0211:06363391001", "IT followed by 11 digits"),
        ("0211:IT06363391002", "Luhn"),
    ],
)
def test_checksums_and_formats_say_why(text, why):
    assert why in _why(text)


def _gln_check(body: str) -> str:
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def _lei_check(body: str) -> str:
    return f"{98 - int(''.join(str(int(c, 36)) for c in body + '00')) % 97:02d}"


def test_generated_numbers_pass_and_every_wrong_check_digit_fails():
    rng = random.Random(7)
    for _ in range(200):
        body = "".join(rng.choice("0123456789") for _ in range(12))
        good = body + _gln_check(body)
        assert parse(f"0088:{good}")
        for wrong in set("0123456789") - {good[-1]}:
            assert "check digit" in _why(f"0088:{body}{wrong}")
        first8 = rng.choice("01") + "".join(rng.choice("0123456789") for _ in range(7))
        be = first8 + f"{97 - int(first8) % 97:02d}"
        assert canonical(f"0208:{be}") == f"0208:{be}"
        assert canonical(f"BE:VAT:BE{be}") == f"9925:be{be}"


def test_lei_check_digits():
    body = "529900T8BM49AURSDO"
    lei = body + _lei_check(body)
    assert canonical(f"LEI:{lei}") == f"0199:{lei.lower()}"
    assert canonical(f"0199:{lei.lower()}") == f"0199:{lei.lower()}"  # checked case-insensitively


def test_code_list_is_data_with_every_referenced_icd():
    assert len(SCHEMES) == 105  # code list 9.7 "entry-count"
    referenced = {
        "0002",
        "0007",
        "0009",
        "0037",
        "0060",
        "0088",
        "0097",
        "0106",
        "0130",
        "0135",
        "0142",
        "0151",
        "0183",
        "0184",
        "0190",
        "0191",
        "0192",
        "0193",
        "0195",
        "0196",
        "0198",
        "0199",
        "0204",
        "0208",
        "0210",
        "0211",
        "0225",
        "9925",
        "9930",
        "9944",
        "9946",
        "9956",
        "9957",
    }
    assert referenced <= set(SCHEMES)
    assert all(len(icd) == 4 and icd.isdigit() and s.icd == icd for icd, s in SCHEMES.items())
    assert len(ALIASES) == len(SCHEMES)  # scheme ids are unique
    assert {s.state for s in SCHEMES.values()} == {"active", "deprecated", "removed", "unregistrable"}
    assert all(s.removed_on for s in SCHEMES.values() if s.state == "removed")
    assert SCHEMES["0193"].registrable and not SCHEMES["9956"].registrable
    assert {"0088", "0192", "0208", "0007", "0151", "0190", "0106", "0184"} <= CHECKED_ICDS


@pytest.mark.parametrize(
    ("alias", "icd"),
    [
        ("NL:KVK", "0106"),
        ("NO:ORG", "0192"),
        ("BE:EN", "0208"),
        ("DK:DIGST", "0184"),
        ("SE:ORGNR", "0007"),
        ("FR:SIRET", "0009"),
        ("IT:CFI", "0210"),
        ("IT:IVA", "0211"),
        ("DE:VAT", "9930"),
        ("FR:VAT", "9957"),
        ("BE:VAT", "9925"),
        ("NL:VAT", "9944"),
        ("FR:SIRENE", "0002"),
        ("FI:OVT", "0037"),
        ("DUNS", "0060"),
        ("GLN", "0088"),
        ("IT:FTI", "0097"),
        ("EU:NAL", "0130"),
        ("IT:SIA", "0135"),
        ("IT:SECETI", "0142"),
        ("AU:ABN", "0151"),
        ("CH:UIDB", "0183"),
        ("NL:OINO", "0190"),
        ("EE:CC", "0191"),
        ("UBLBE", "0193"),
        ("SG:UEN", "0195"),
        ("IS:KTNR", "0196"),
        ("DK:ERST", "0198"),
    ],
)
def test_psb_aliases(alias, icd):
    assert ALIASES[alias] == icd


def test_deprecated_but_registrable_schemes_are_accepted():
    assert canonical("0193:abcd12345") == "0193:abcd12345"
    assert canonical("NO:VAT:990399123MVA") == "9909:990399123mva"


def test_invalid_id_is_an_input_error_without_echoing_more_than_the_text():
    with pytest.raises(InputError) as info:
        canonical("0192:745707328")
    assert info.value.exit_code == 2
    assert str(info.value).startswith("participant id '0192:745707328': ")
    assert isinstance(info.value, identifiers.InvalidParticipantId)


def test_a_key_typed_where_an_id_belongs_is_masked_in_the_message():
    with pytest.raises(InvalidParticipantId) as info:
        canonical("11AAbb$$cc#D")
    assert "11AAbb$$cc#D" not in str(info.value) and "11…#D" in str(info.value)
