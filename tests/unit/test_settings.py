"""Settings: defaults equal config/default.toml; layering; secrets only from the environment."""

import dataclasses
import tomllib
from pathlib import Path

import pytest

from migration_engine.errors import ConfigError
from migration_engine.settings import SECRET_KEYS, Settings, as_dict, load_settings

ROOT = Path(__file__).parents[2]


def test_default_toml_lists_every_setting_with_its_default():
    data = tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8"))
    defaults = as_dict(Settings(), mask_secrets=False)
    for section, body in defaults.items():
        for key, value in body.items():
            if (section, key) in SECRET_KEYS:
                assert key not in data.get(section, {}), f"{section}.{key} is a secret and must not be in the file"
                continue
            assert data[section][key] == value, f"{section}.{key}"
    for section, body in data.items():
        assert set(body) <= set(defaults[section]), section


def test_default_toml_loads_as_a_config_file():
    assert load_settings(ROOT / "config" / "default.toml", env={}) == Settings()


def test_environment_overrides_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[worker]\nconcurrency = 4\n[psb]\nbase_url = "http://file"\n')
    s = load_settings(
        f, env={"PEPPOL_MIGRATE_PSB__BASE_URL": "http://env", "PEPPOL_MIGRATE_KEYS__REISSUE_EXPIRED": "yes"}
    )
    assert s.worker.concurrency == 4
    assert s.psb.base_url == "http://env"
    assert s.keys.reissue_expired is True


def test_config_file_from_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[database]\nurl = "sqlite:///x.db"\n')
    assert load_settings(env={"PEPPOL_MIGRATE_CONFIG": str(f)}).database.url == "sqlite:///x.db"


def test_secret_in_a_file_is_refused(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[psb]\nclient_secret = "s3cret-value"\n')
    with pytest.raises(ConfigError, match="secret") as err:
        load_settings(f, env={})
    assert "s3cret-value" not in str(err.value)


def test_secret_from_a_file_path(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    s = load_settings(env={"PEPPOL_MIGRATE_PSB__CLIENT_SECRET_FILE": str(secret)})
    assert s.psb.client_secret == "from-a-file"
    assert "from-a-file" not in repr(s)
    assert as_dict(s)["psb"]["client_secret"] == "(set)"


@pytest.mark.parametrize(
    ("body", "env", "match"),
    [
        ("[nope]\na = 1\n", {}, "unknown section"),
        ("[worker]\nconcurency = 1\n", {}, "not a setting"),
        ("[worker]\nconcurrency = 'many'\n", {}, "whole number"),
        ("[handoff]\nmode = 'pigeon'\n", {}, "handoff.mode"),
        ("", {"PEPPOL_MIGRATE_WORKER__NOPE": "1"}, "not a setting"),
        ("", {"PEPPOL_MIGRATE_PSB__VERIFY_TLS": "perhaps"}, "true or false"),
        ("[worker\n", {}, "not valid TOML"),
    ],
)
def test_bad_settings_say_what_and_where(tmp_path, body, env, match):
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=match):
        load_settings(f, env=env)


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().worker.concurrency = 3  # type: ignore[misc]
