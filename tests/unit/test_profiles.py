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


def test_an_empty_profiles_dir_means_the_packaged_profiles_which_are_the_repository_ones():
    packaged = ProfileCatalog.load("")
    assert packaged.names() == ProfileCatalog.load(ROOT / "config" / "profiles").names() == {"default"}
    assert packaged.get("default") == ProfileCatalog.load(ROOT / "config" / "profiles").get("default")
    assert ProfileCatalog.load(None).names() == packaged.names()


def test_a_missing_profiles_folder_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"does not exist \(setting profiles.dir\)"):
        ProfileCatalog.load(tmp_path / "nowhere")
