from pathlib import Path

import pytest

from migration_engine.errors import ConfigError
from migration_engine.profiles import ProfileCatalog

ROOT = Path(__file__).parents[2]


def test_shipped_default_profile_loads():
    catalog = ProfileCatalog.load(ROOT / "config" / "profiles")
    profile = catalog.get("default")
    assert profile.capabilities["invoices"] == "on"
    assert profile.hooks and profile.users and profile.business_card is not None
    assert profile.capability_body()["invoices"] == {"state": "on"}


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("[capabilities]\ninvoices = 'maybe'\n", "capability invoices"),
        ("[[hooks]]\nname = 'x'\n", "hook 1 needs"),
        ("[[users]]\nname = 'u'\n[users.permissions]\ncanFly = true\n", "unknown permission"),
        ("[business_card]\ncountry_code = 'NLD'\n", "two-letter"),
        ("colour = 'blue'\n", "unknown key"),
    ],
)
def test_bad_profiles_are_refused_with_the_file_named(tmp_path, body, match):
    (tmp_path / "bad.toml").write_text(body)
    with pytest.raises(ConfigError, match=match) as err:
        ProfileCatalog.load(tmp_path)
    assert "bad.toml" in str(err.value)


def test_unknown_profile_names_the_known_ones():
    catalog = ProfileCatalog.load(ROOT / "config" / "profiles")
    with pytest.raises(ConfigError, match="known: default"):
        catalog.get("gold")
