"""Settings: defaults equal config/default.toml; layering; environments; every value checked
for type and range with the setting and its source named; secrets only from the environment."""

import dataclasses
import logging
import tomllib
from pathlib import Path

import pytest

from migration_engine.errors import ConfigError
from migration_engine.settings import (
    ENVIRONMENTS,
    SECRET_KEYS,
    Settings,
    as_dict,
    load_settings,
    mask_url,
    packaged_defaults_text,
    resolve_settings,
    with_overrides,
)

ROOT = Path(__file__).parents[2]


def assert_file_lists_every_default(data):
    defaults = as_dict(Settings(), mask_secrets=False)
    for section, body in defaults.items():
        for key, value in body.items():
            if (section, key) in SECRET_KEYS:
                assert key not in data.get(section, {}), f"{section}.{key} is a secret and must not be in the file"
                continue
            assert data[section][key] == value, f"{section}.{key}"
    for section, body in data.items():
        assert set(body) <= set(defaults[section]), section


def test_default_toml_lists_every_setting_with_its_default():
    assert_file_lists_every_default(tomllib.loads((ROOT / "config" / "default.toml").read_text(encoding="utf-8")))


def test_the_packaged_defaults_are_the_repository_file_and_list_every_default():
    text = packaged_defaults_text()
    assert text == (ROOT / "config" / "default.toml").read_text(encoding="utf-8")
    assert_file_lists_every_default(tomllib.loads(text))


def test_default_toml_loads_as_a_config_file_with_its_paths_made_absolute():
    folder = ROOT / "config"
    loaded = load_settings(folder / "default.toml", env={})
    assert loaded.database.url == f"sqlite:///{folder / 'peppol-migrate.db'}"
    assert loaded.handoff.outbox_dir == str(folder / "outbox")
    assert loaded.profiles.dir == ""  # empty stays empty: the packaged profiles
    rest = with_overrides(
        loaded, database={"url": Settings().database.url}, handoff={"outbox_dir": Settings().handoff.outbox_dir}
    )
    assert rest == Settings()


def test_no_file_and_no_variables_give_the_defaults():
    assert load_settings(env={}) == Settings()


def test_environment_overrides_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[worker]\nconcurrency = 4\n[psb]\nbase_url = "https://file"\n')
    s = load_settings(
        f, env={"PEPPOL_MIGRATE_PSB__BASE_URL": "https://env", "PEPPOL_MIGRATE_KEYS__REISSUE_EXPIRED": "yes"}
    )
    assert s.worker.concurrency == 4
    assert s.psb.base_url == "https://env"
    assert s.keys.reissue_expired is True


def test_config_file_from_environment(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[database]\nurl = "sqlite:////abs/x.db"\n')
    assert load_settings(env={"PEPPOL_MIGRATE_CONFIG": str(f)}).database.url == "sqlite:////abs/x.db"


def test_secret_in_a_file_is_refused(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[psb]\nclient_secret = "s3cret-value"\n')
    with pytest.raises(ConfigError, match="secret") as err:
        load_settings(f, env={})
    assert "s3cret-value" not in str(err.value)
    assert "PEPPOL_MIGRATE_PSB__CLIENT_SECRET" in str(err.value)


def test_secret_from_a_file_path(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    s = load_settings(env={"PEPPOL_MIGRATE_PSB__CLIENT_SECRET_FILE": str(secret)})
    assert s.psb.client_secret == "from-a-file"
    assert "from-a-file" not in repr(s)
    assert as_dict(s)["psb"]["client_secret"] == "(set)"


def test_an_unreadable_secret_file_is_named_without_a_value(tmp_path):
    with pytest.raises(ConfigError, match="PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY_FILE: cannot read"):
        load_settings(env={"PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY_FILE": str(tmp_path / "missing")})


# --- psb.environment ----------------------------------------------------------------------


def test_acceptance_is_the_default_and_points_everything_at_acceptance():
    s = load_settings(env={})
    assert s.psb.environment == "acceptance"
    assert s.psb.base_url == "https://accp-psb.econnect.eu"
    assert s.psb.identity_url == "https://accp-identity.econnect.eu"
    assert s.psb.access_point_url == "https://accp-ap.econnect.eu/as4/v1"
    assert s.verify.sml_zone == "participant.sml.test.tech.peppol.org"  # the test network, as the PSB's acceptance


def test_the_dataclass_defaults_are_the_acceptance_preset():
    for (section, key), value in ENVIRONMENTS["acceptance"].items():
        assert getattr(getattr(Settings(), section), key) == value


def test_production_sets_the_urls_and_the_production_sml_zone():
    s = load_settings(
        env={
            "PEPPOL_MIGRATE_PSB__ENVIRONMENT": "Production",
            "PEPPOL_MIGRATE_PSB__ACCESS_POINT_URL": "https://ap.example.eu/as4",
        }
    )
    assert s.psb.environment == "production"
    assert s.psb.base_url == "https://psb.econnect.eu"
    assert s.psb.identity_url == "https://identity.econnect.eu"
    assert s.psb.access_point_url == "https://ap.example.eu/as4"
    assert s.verify.sml_zone == "participant.sml.prod.tech.peppol.org"


def test_an_explicit_value_wins_over_the_environment_and_its_source_is_kept(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[psb]\nenvironment = "production"\naccess_point_url = "https://ap.example.eu/as4"\n')
    loaded = resolve_settings(f, env={"PEPPOL_MIGRATE_PSB__BASE_URL": "http://127.0.0.1:8080"})
    assert loaded.settings.psb.base_url == "http://127.0.0.1:8080"
    assert loaded.settings.psb.identity_url == "https://identity.econnect.eu"
    assert str(loaded.sources["psb.base_url"]) == "PEPPOL_MIGRATE_PSB__BASE_URL"
    assert str(loaded.sources["psb.identity_url"]) == "psb.environment (production)"
    assert str(loaded.sources["psb.environment"]) == str(f)
    assert str(loaded.sources["psb.access_point_url"]) == str(f)


def test_production_without_an_access_point_url_says_what_to_set(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[psb]\nenvironment = "production"\n')
    with pytest.raises(ConfigError, match=r"psb\.access_point_url is not set") as err:
        load_settings(f, env={})
    assert f"{f}, key psb.environment" in str(err.value)


def test_an_unknown_environment_names_the_two(tmp_path):
    with pytest.raises(ConfigError, match="acceptance, production") as err:
        load_settings(env={"PEPPOL_MIGRATE_PSB__ENVIRONMENT": "staging"})
    assert "psb.environment = 'staging' (from environment variable PEPPOL_MIGRATE_PSB__ENVIRONMENT)" in str(err.value)


def test_the_other_environments_url_set_explicitly_is_warned_about(caplog):
    env = {
        "PEPPOL_MIGRATE_PSB__ENVIRONMENT": "production",
        "PEPPOL_MIGRATE_PSB__BASE_URL": ENVIRONMENTS["acceptance"][("psb", "base_url")],
    }
    env["PEPPOL_MIGRATE_PSB__ACCESS_POINT_URL"] = "https://ap.example.eu/as4"
    with caplog.at_level(logging.WARNING, logger="migration_engine.settings"):
        s = load_settings(env=env)
    assert s.psb.base_url == "https://accp-psb.econnect.eu"  # still wins
    assert "psb.base_url is the other environment's value" in caplog.text


# --- validation: type and range, with the setting and its source -----------------------------


@pytest.mark.parametrize(
    ("setting", "value", "allowed"),
    [
        ("worker.concurrency", "0", "at least 1"),
        ("worker.concurrency", "2.5", "whole number"),
        ("worker.poll_interval_s", "0", "greater than 0"),
        ("worker.lease_s", "-1", "greater than 0"),
        ("psb.timeout_s", "0", "greater than 0"),
        ("psb.timeout_s", "nan", "finite"),
        ("psb.max_rps", "-0.5", "0 (no limit) or a positive number"),
        ("psb.max_rps", "inf", "finite"),
        ("psb.base_url", "psb.econnect.eu", "http:// or https:// URL"),
        ("psb.identity_url", "ftp://identity.example", "http:// or https:// URL"),
        ("psb.access_point_url", "", "http:// or https:// URL"),
        ("psb.verify_tls", "perhaps", "true or false"),
        ("retry.max_attempts", "0", "at least 1"),
        ("retry.base_s", "0", "greater than 0"),
        ("retry.max_s", "-inf", "finite"),
        ("takeover.poll_s", "0", "greater than 0"),
        ("takeover.poll_max_s", "0", "greater than 0"),
        ("takeover.deadline_h", "-72", "greater than 0"),
        ("keys.ttl_h", "0", "greater than 0"),
        ("handoff.mode", "pigeon", "outbox, https, manual"),
        ("handoff.outbox_dir", " ", "must name a folder"),
        ("handoff.endpoint", "mailto:x@example.com", "http:// or https:// URL"),
        ("database.url", "peppol-migrate.db", "SQLAlchemy URL"),
        ("profiles.default", "gold plus", "profile name"),
        ("verify.sml_zone", "not a zone", "DNS name"),
        ("verify.timeout_s", "0", "greater than 0"),
    ],
)
def test_a_bad_value_from_the_environment_names_setting_variable_and_what_is_allowed(setting, value, allowed):
    section, key = setting.split(".")
    variable = f"PEPPOL_MIGRATE_{section.upper()}__{key.upper()}"
    with pytest.raises(ConfigError) as err:
        load_settings(env={variable: value})
    message = str(err.value)
    assert message.startswith(f"{setting} = "), message
    assert f"(from environment variable {variable})" in message
    assert allowed in message


@pytest.mark.parametrize(
    ("line", "setting", "allowed"),
    [
        ("[worker]\nconcurrency = 0\n", "worker.concurrency", "at least 1"),
        ("[worker]\nconcurrency = 8.5\n", "worker.concurrency", "whole number"),
        ("[worker]\nconcurrency = true\n", "worker.concurrency", "whole number"),
        ("[worker]\nconcurrency = 'many'\n", "worker.concurrency", "whole number"),
        ("[psb]\ntimeout_s = nan\n", "psb.timeout_s", "finite"),
        ("[psb]\nmax_rps = inf\n", "psb.max_rps", "finite"),
        ("[psb]\nbase_url = 42\n", "psb.base_url", "expected text"),
        ("[outbound]\nusers = ['alice', '']\n", "outbound.users", "non-empty user names"),
        ("[outbound]\nusers = [1]\n", "outbound.users", "list of text"),
        ("[keys]\nttl_h = 0\n", "keys.ttl_h", "greater than 0"),
    ],
)
def test_a_bad_value_in_a_file_names_setting_file_and_key(tmp_path, line, setting, allowed):
    f = tmp_path / "c.toml"
    f.write_text(line)
    with pytest.raises(ConfigError) as err:
        load_settings(f, env={})
    message = str(err.value)
    assert message.startswith(f"{setting} = "), message
    assert f"(from {f}, key {setting})" in message
    assert allowed in message


@pytest.mark.parametrize(
    ("env", "match"),
    [
        ({"PEPPOL_MIGRATE_HANDOFF__MODE": "https"}, "handoff.mode is https .*handoff.endpoint is empty"),
        ({"PEPPOL_MIGRATE_VERIFY__PEPPOL_NETWORK": "true"}, "verify.econnect_smp_host"),
    ],
)
def test_combinations_name_the_variable_that_asked_for_them(env, match):
    with pytest.raises(ConfigError, match=match) as err:
        load_settings(env=env)
    assert next(iter(env)) in str(err.value)


def test_a_password_in_a_bad_url_is_not_printed():
    with pytest.raises(ConfigError) as err:
        load_settings(env={"PEPPOL_MIGRATE_HANDOFF__ENDPOINT": "ftp://user:topsecret@example.com/in"})
    assert "topsecret" not in str(err.value) and "user:***@example.com" in str(err.value)


def test_a_password_in_a_database_url_without_a_scheme_is_not_printed():
    with pytest.raises(ConfigError) as err:
        load_settings(env={"PEPPOL_MIGRATE_DATABASE__URL": "bob:topsecret@db.example/pm"})
    assert "topsecret" not in str(err.value) and "bob:***@db.example/pm" in str(err.value)
    assert "PEPPOL_MIGRATE_DATABASE__URL" in str(err.value)


def test_mask_url_hides_only_the_password():
    assert mask_url("postgresql+psycopg://pm:pw@db.example:5432/pm") == "postgresql+psycopg://pm:***@db.example:5432/pm"
    assert mask_url("postgresql+psycopg://pm@db.example/pm") == "postgresql+psycopg://pm@db.example/pm"
    assert mask_url("sqlite:///x.db") == "sqlite:///x.db"


def test_with_overrides_checks_the_result():
    with pytest.raises(ConfigError, match=r"worker\.concurrency = 0 .*at least 1"):
        with_overrides(Settings(), worker={"concurrency": 0})


# --- unknown names: errors with a suggestion, or a warning -------------------------------------


@pytest.mark.parametrize(
    ("body", "match"),
    [
        ("[nope]\na = 1\n", r"unknown section \[nope\]"),
        ("[worke]\nconcurrency = 1\n", r"unknown section \[worke\]; did you mean worker\?"),
        ("[worker]\nconcurency = 1\n", r"worker.concurency is not a setting; did you mean concurrency\?"),
        ("[psb]\nconcurrency = 1\n", r"psb.concurrency is not a setting; did you mean \[worker\] concurrency\?"),
        ("[worker\n", "not valid TOML"),
    ],
)
def test_unknown_names_in_a_file_are_refused_with_a_suggestion(tmp_path, body, match):
    f = tmp_path / "c.toml"
    f.write_text(body)
    with pytest.raises(ConfigError, match=match) as err:
        load_settings(f, env={})
    assert str(f) in str(err.value)


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("PEPPOL_MIGRATE_PSB__BASEURL", "PEPPOL_MIGRATE_PSB__BASE_URL"),
        ("PEPPOL_MIGRATE_WORKER__CONCURENCY", "PEPPOL_MIGRATE_WORKER__CONCURRENCY"),
        ("PEPPOL_MIGRATE_PBS__CLIENT_ID", "PEPPOL_MIGRATE_PSB__CLIENT_ID"),
        ("PEPPOL_MIGRATE_WORKER__NOPE", None),
    ],
)
def test_an_unknown_variable_shaped_like_a_setting_is_an_error_with_a_suggestion(variable, suggestion):
    with pytest.raises(ConfigError, match=f"{variable} is not a setting") as err:
        load_settings(env={variable: "1"})
    if suggestion:
        assert f"did you mean {suggestion}?" in str(err.value)
    else:
        assert "did you mean" not in str(err.value)


@pytest.mark.parametrize(
    ("variable", "suggestion"),
    [
        ("PEPPOL_MIGRATE_DATABASE_URL", "PEPPOL_MIGRATE_DATABASE__URL"),
        ("PEPPOL_MIGRATE_PSB_CLIENT_SECRET", "PEPPOL_MIGRATE_PSB__CLIENT_SECRET"),
        ("PEPPOL_MIGRATE_CONFIGFILE", "PEPPOL_MIGRATE_CONFIG"),
    ],
)
def test_a_near_miss_without_a_double_underscore_is_a_warning_with_a_suggestion(caplog, variable, suggestion):
    with caplog.at_level(logging.WARNING, logger="migration_engine.settings"):
        s = load_settings(env={variable: "sqlite:////tmp/elsewhere.db"})
    assert s == Settings()  # ignored
    [record] = [r for r in caplog.records if r.name == "migration_engine.settings"]
    assert record.levelno == logging.WARNING
    assert record.getMessage() == f"{variable} is not a setting and is ignored; did you mean {suggestion}?"
    assert "elsewhere" not in record.getMessage()  # the value, which may be a secret, is not logged


def test_an_unrelated_variable_with_the_prefix_is_warned_about_without_a_suggestion(caplog):
    with caplog.at_level(logging.WARNING, logger="migration_engine.settings"):
        load_settings(env={"PEPPOL_MIGRATE_TEST_POSTGRES_URL": "postgresql://x"})
    assert "PEPPOL_MIGRATE_TEST_POSTGRES_URL is not a setting and is ignored" in caplog.text
    assert "did you mean" not in caplog.text


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().worker.concurrency = 3  # type: ignore[misc]


@pytest.mark.parametrize("key", ["base_url", "identity_url"])
@pytest.mark.parametrize("url", ["http://psb.econnect.eu", "http://10.0.0.5:8080/api", "http://localhost.evil.example"])
def test_clear_text_psb_urls_to_another_host_are_refused_naming_the_setting_and_its_source(key, url):
    variable = f"PEPPOL_MIGRATE_PSB__{key.upper()}"
    with pytest.raises(ConfigError) as err:
        load_settings(env={variable: url})
    message = str(err.value)
    assert message.startswith(f"psb.{key} = ") and f"(from environment variable {variable})" in message
    assert "must be an https:// URL" in message and "loopback" in message


def test_a_clear_text_psb_url_from_a_file_names_the_file(tmp_path):
    f = tmp_path / "c.toml"
    f.write_text('[psb]\nidentity_url = "http://identity.example"\n')
    with pytest.raises(ConfigError, match=r"psb\.identity_url = .*c\.toml.*must be an https:// URL"):
        load_settings(f, env={})


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8765",
        "http://127.10.20.30/psb",
        "http://[::1]:8765",
        "http://localhost:8765",
        "http://LOCALHOST",
        "https://psb.example",
    ],
)
def test_clear_text_is_allowed_to_a_loopback_host_and_tls_anywhere(url):
    s = load_settings(env={"PEPPOL_MIGRATE_PSB__BASE_URL": url, "PEPPOL_MIGRATE_PSB__IDENTITY_URL": url})
    assert (s.psb.base_url, s.psb.identity_url) == (url, url)
    with pytest.raises(ConfigError, match=r"psb\.base_url"):  # with_overrides checks alike
        with_overrides(s, psb={"base_url": "http://psb.example"})
