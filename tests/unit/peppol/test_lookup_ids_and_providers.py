"""Lookups take any identifier the Peppol syntax allows (scheme checks are warnings); the known-SMP
list names providers; CNAME fallback is off unless configured."""

from __future__ import annotations

import httpx
import pytest

from migration_engine.errors import ConfigError, InputError
from migration_engine.peppol.identifiers import parse, parse_lenient
from migration_engine.peppol.sml import SmlResolver
from migration_engine.peppol.smp import SmpClient
from migration_engine.peppol.snapshots import NetworkLookups, parse_known_smps, provider_of
from migration_engine.settings import Settings, load_settings


@pytest.mark.parametrize(
    ("text", "canonical", "warning"),
    [
        ("0106:12345678", "0106:12345678", None),
        ("9999:ABC", "9999:abc", "unknown ICD 9999"),
        ("0037:123456", "0037:123456", "was removed from the code list on 2024-12-31; use 0216"),
        ("0088:1234567890123", "0088:1234567890123", "GLN check digit"),
        ("0106:a/b", "0106:a/b", "outside A-Z a-z 0-9"),
        ("9912:eu1", "9912:eu1", "deprecated"),
    ],
)
def test_lenient_ids_warn_where_import_refuses(text, canonical, warning):
    parsed, warnings = parse_lenient(text)
    assert parsed.canonical == canonical
    if warning is None:
        assert warnings == ()
        parse(text)  # and import takes it too
    else:
        assert any(warning in w for w in warnings), warnings


@pytest.mark.parametrize("text", ["", "0106", "0106:", "0106:a b", "x" * 10 + ":1", "0106:" + "1" * 200])
def test_lenient_ids_still_refuse_what_is_no_peppol_syntax(text):
    with pytest.raises(InputError):
        parse_lenient(text)


def test_the_longest_known_smp_prefix_names_the_provider():
    known = parse_known_smps(["smp.example.com=Example", "smp.example.com/tenant-b=Tenant B", "other.eu:8443=Other"])
    assert provider_of("https://smp.example.com/tenant-b/x", econnect_smp="", known_smps=known) == ("Tenant B", False)
    assert provider_of("https://smp.example.com/tenant-c", econnect_smp="", known_smps=known) == ("Example", False)
    assert provider_of("https://other.eu:8443", econnect_smp="", known_smps=known) == ("Other", False)
    assert provider_of("https://other.eu", econnect_smp="", known_smps=known) == (None, False)
    econnect = provider_of("https://smp.example.com/ec", econnect_smp="smp.example.com/ec", known_smps=known)
    assert econnect == ("eConnect", True)


@pytest.mark.parametrize("entry", ["no-equals", "=Name", "host=", "two words=Name"])
def test_a_bad_known_smp_entry_is_refused(entry):
    with pytest.raises(ValueError):
        parse_known_smps([entry])


def test_settings_refuse_a_bad_known_smp_entry_naming_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"network\.known_smps"):
        load_settings(env={"PEPPOL_MIGRATE_NETWORK__KNOWN_SMPS": "smp.example.com"}, cwd=tmp_path)


def test_cname_fallback_is_off_by_default_and_the_directory_follows_the_environment(tmp_path):
    defaults = load_settings(env={}, cwd=tmp_path)
    assert defaults.verify.cname_fallback is False
    lookups = NetworkLookups.from_settings(defaults)
    try:
        assert lookups.sml.cname_fallback is False
        assert lookups.directory is not None and lookups.directory.base_url == "https://test-directory.peppol.eu"
    finally:
        lookups.close()
    production = load_settings(
        env={"PEPPOL_MIGRATE_PSB__ENVIRONMENT": "production", "PEPPOL_MIGRATE_PSB__ACCESS_POINT_URL": "https://ap.x/as4"},
        cwd=tmp_path,
    )
    assert production.network.directory_url == "https://directory.peppol.eu"
    assert production.lookups.directory_per_s == 2.0


def test_lookups_name_providers_without_the_network():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no HTTP expected, got {request.url}")

    lookups = NetworkLookups(
        sml=SmlResolver(zone="participant.sml.test.tech.peppol.org", server="127.0.0.1:9"),
        smp=SmpClient(transport=httpx.MockTransport(refuse)),
        econnect_smp="smp.econnect.example",
        known_smps=["smp.provider-b.example=Provider B"],
    )
    try:
        assert lookups.provider_of("https://smp.provider-b.example") == ("Provider B", False)
        assert lookups.provider_of("http://smp.econnect.example/") == ("eConnect", True)
        assert Settings().network.known_smps == ()
    finally:
        lookups.close()
