"""SML names with the published test vectors (docs/peppol-network.md, "SML lookup"), the NAPTR regexp, servers."""

from __future__ import annotations

import pytest

from migration_engine.errors import ConfigError
from migration_engine.peppol.sml import (
    PEPPOL_PRODUCTION_ZONE,
    PEPPOL_TEST_ZONE,
    apply_naptr_regexp,
    cname_name,
    naptr_name,
    parse_server,
)

# PeppolNaptrURLProviderTest (peppol-commons), test zone.
NAPTR_VECTORS = [
    (
        "9915:test",
        "eh5boavaktmbgzyh2a63dz4qov33fvp5nsdvqklucfraayoodw6a.iso6523-actorid-upis.participant.sml.test.tech.peppol.org",
    ),
    (
        "0088:1234567890123",
        "sjsyvccmqyjxk3weuapffq4x3umcrf4qryherj4vovhmonh7gccq.iso6523-actorid-upis.participant.sml.test.tech.peppol.org",
    ),
]
# PeppolURLProviderTest (peppol-commons): the B- label of the legacy CNAME scheme.
CNAME_VECTORS = [
    ("0088:123abc", "B-f5e78500450d37de5aabe6648ac3bb70"),
    ("0088:123ABC", "B-f5e78500450d37de5aabe6648ac3bb70"),
    ("9915:test", "B-85008b8279e07ab0392da75fa55856a2"),
    ("", "B-d41d8cd98f00b204e9800998ecf8427e"),
]


@pytest.mark.parametrize(("value", "name"), NAPTR_VECTORS)
def test_naptr_names_match_the_published_vectors(value, name):
    assert naptr_name(value, PEPPOL_TEST_ZONE) == name


@pytest.mark.parametrize(("value", "label"), CNAME_VECTORS)
def test_cname_names_match_the_published_vectors(value, label):
    assert cname_name(value, PEPPOL_TEST_ZONE) == f"{label}.iso6523-actorid-upis.{PEPPOL_TEST_ZONE}"


def test_the_policy_example_in_the_old_ec_zone():
    name = cname_name("0088:123ABC", "edelivery.tech.ec.europa.eu.")
    assert name == "B-f5e78500450d37de5aabe6648ac3bb70.iso6523-actorid-upis.edelivery.tech.ec.europa.eu"


def test_values_are_lowercased_the_scheme_prefix_and_trailing_dot_ignored():
    expected = naptr_name("9915:test", PEPPOL_TEST_ZONE)
    assert naptr_name("9915:TEST", PEPPOL_TEST_ZONE) == expected
    assert naptr_name("iso6523-actorid-upis::9915:test", PEPPOL_TEST_ZONE + ".") == expected
    assert naptr_name("9915:test", "PARTICIPANT.SML.TEST.TECH.PEPPOL.ORG") == expected
    assert naptr_name("9915:test", PEPPOL_PRODUCTION_ZONE).endswith(".participant.sml.prod.tech.peppol.org")
    assert "=" not in naptr_name("0106:12345678", PEPPOL_TEST_ZONE)


def test_the_published_naptr_record_gives_its_smp_url():
    regexp = "!^.*$!http://EHEALTH-TEST-UPRC.publisher.acc.edelivery.tech.ec.europa.eu!"
    url = apply_naptr_regexp(regexp, naptr_name("9915:test", PEPPOL_TEST_ZONE))
    assert url == "http://EHEALTH-TEST-UPRC.publisher.acc.edelivery.tech.ec.europa.eu"


@pytest.mark.parametrize(
    ("regexp", "domain", "url"),
    [
        ("!^.*$!https://smp.example.com/!", "abc.zone", "https://smp.example.com/"),
        ("#^(.*)\\.zone$#https://smp.example.com/\\1#", "abc.zone", "https://smp.example.com/abc"),
        ("!^ABC(.*)$!http://smp.example.com!i", "abc.zone", "http://smp.example.com"),
        ("!^.*$!http://127.0.0.1:8080/smp/econnect!", "x.y", "http://127.0.0.1:8080/smp/econnect"),
        ("!^.*$!http://smp.example.com/a\\!b!", "x", "http://smp.example.com/a!b"),  # escaped delimiter
    ],
)
def test_naptr_regexps_are_applied(regexp, domain, url):
    assert apply_naptr_regexp(regexp, domain) == url


@pytest.mark.parametrize(
    ("regexp", "why"),
    [
        ("", "too long"),
        ("!^.*$!http://x!g", "flags"),
        ("a^.*$ahttp://xa", "delimit"),
        ("!^.*$!http://x", "form"),
        ("!(!http://x!", "compile"),
        ("!^(a+)+$!http://x!", "nested"),
        ("!^z.*$!http://x!", "does not match"),
        ("!^.*$!ftp://smp.example.com!", "not an http"),
        ("!^.*$!http://user:pw@smp.example.com!", "not an http"),
        ("!^.*$!\\0!", "not an http"),
        ("!^.*$!http://smp.example.com/?q=1!", "plain"),
        ("!^.*$!http://" + "x" * 260 + "!", "too long"),
    ],
)
def test_unusable_naptr_regexps_are_refused_with_a_reason(regexp, why):
    with pytest.raises(ValueError, match=why):
        apply_naptr_regexp(regexp, "abc.zone")


def test_a_group_reference_beyond_the_pattern_is_empty():
    assert apply_naptr_regexp("!^.*$!http://smp.example.com/\\7!", "abc") == "http://smp.example.com/"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5353", ("127.0.0.1", 5353)),
        ("127.0.0.1", ("127.0.0.1", 53)),
        ("[::1]:5353", ("::1", 5353)),
        ("::1", ("::1", 53)),
        (" 10.0.0.2:53 ", ("10.0.0.2", 53)),
    ],
)
def test_dns_servers_are_parsed(text, expected):
    assert parse_server(text) == expected


@pytest.mark.parametrize("text", ["dns.example.com:53", "127.0.0.1:0", "127.0.0.1:x", "[::1]5353", "127.0.0.1:70000"])
def test_bad_dns_servers_are_a_config_error(text):
    with pytest.raises(ConfigError, match=r"verify\.dns_server"):
        parse_server(text)
