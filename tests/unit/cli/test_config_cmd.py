"""``config show`` (values, sources, secrets masked) and ``config init`` (a starter file that
changes nothing until edited, never overwritten without --force)."""

import argparse
import json
import tomllib

import pytest

from migration_engine.cli import config_cmd
from migration_engine.errors import InputError
from migration_engine.settings import CONFIG_FILE_NAME, SECRET_KEYS, Settings, as_dict, load_settings

SECRET = "hunter2-very-secret"
PASSWORD = "db-pass-word"


def parse(*argv):
    parser = argparse.ArgumentParser()
    parser.add_argument("--config")
    config_cmd.add_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(list(argv))


@pytest.fixture
def setup(tmp_path):
    f = tmp_path / "pm.toml"
    f.write_text('[worker]\nconcurrency = 3\n[handoff]\noutbox_dir = "out"\n', encoding="utf-8")
    env = {
        "PEPPOL_MIGRATE_PSB__CLIENT_SECRET": SECRET,
        "PEPPOL_MIGRATE_DATABASE__URL": f"postgresql+psycopg://pm:{PASSWORD}@db.example/pm",
        "PEPPOL_MIGRATE_HANDOFF__MODE": "https",
        "PEPPOL_MIGRATE_HANDOFF__ENDPOINT": "https://np.example/keys?token=abc123",
    }
    return f, env


def test_show_prints_values_with_their_sources_and_no_secret(setup, capsys):
    f, env = setup
    assert config_cmd.run(parse("--config", str(f), "config", "show"), env=env) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and PASSWORD not in out and "abc123" not in out
    lines = out.splitlines()
    assert lines[0] == f"# config file: {f} (found by --config)"
    assert any(line.startswith("concurrency = 3") and line.endswith(f"# {f}") for line in lines)
    assert any(line.startswith(f'outbox_dir = "{f.parent / "out"}"') for line in lines)
    assert any(
        line.startswith("# client_secret: (set)") and "PEPPOL_MIGRATE_PSB__CLIENT_SECRET" in line for line in lines
    )
    assert any(line.startswith("# password: (not set)") and line.endswith("# default") for line in lines)
    assert any(line.startswith('url = "postgresql+psycopg://pm:***@db.example/pm"') for line in lines)
    assert any(line.startswith("base_url = ") and line.endswith("# psb.environment (acceptance)") for line in lines)


def test_show_json_lists_every_setting_with_value_source_and_kind(setup, capsys):
    f, env = setup
    assert config_cmd.run(parse("--config", str(f), "config", "show", "--json"), env=env) == 0
    out = capsys.readouterr().out
    assert SECRET not in out and PASSWORD not in out and "abc123" not in out
    data = json.loads(out)
    assert data["config_file"] == str(f) and data["found_by"] == "--config"
    settings = data["settings"]
    assert {s: set(body) for s, body in settings.items()} == {s: set(b) for s, b in as_dict(Settings()).items()}
    assert settings["worker"]["concurrency"] == {"value": 3, "source": str(f), "kind": "file"}
    assert settings["psb"]["client_secret"] == {
        "value": "(set)",
        "source": "PEPPOL_MIGRATE_PSB__CLIENT_SECRET",
        "kind": "variable",
    }
    assert settings["keys"]["encryption_key"]["value"] == "(not set)"
    assert settings["handoff"]["endpoint"]["value"] == "https://np.example/keys?***"
    assert settings["verify"]["sml_zone"] == {
        "value": "participant.sml.test.tech.peppol.org",
        "source": "psb.environment (acceptance)",
        "kind": "environment-preset",
    }
    assert settings["retry"]["max_attempts"]["kind"] == "default"


def test_show_without_a_file_says_where_it_looked(tmp_path, capsys):
    assert config_cmd.run(parse("config", "show"), env={}, cwd=tmp_path) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == [
        "# config file: none; looked for, in order:",
        f"#   {tmp_path / 'peppol-migrate.toml'} (./peppol-migrate.toml in the working directory)",
    ]


def test_init_writes_a_starter_that_changes_nothing_and_lists_every_setting(tmp_path, capsys):
    assert config_cmd.run(parse("config", "init"), env={}, cwd=tmp_path) == 0
    written = tmp_path / "peppol-migrate.toml"
    assert str(written) in capsys.readouterr().out
    text = written.read_text(encoding="utf-8")
    assert tomllib.loads(text) == {section: {} for section in as_dict(Settings())}  # every value commented out
    assert load_settings(env={}, cwd=tmp_path) == Settings()  # found by discovery, and changes nothing
    for section, body in as_dict(Settings(), mask_secrets=False).items():
        for key in body:
            if (section, key) in SECRET_KEYS:
                assert f"{key} = " not in text, f"{section}.{key} is a secret: never offered in a file"
            else:
                assert f"# {key} = " in text, f"{section}.{key}"
    assert "[psb]\n" in text and '# environment = "acceptance"' in text
    assert "relative to this file's folder" in text


def test_uncommenting_a_starter_line_changes_that_setting(tmp_path):
    path = tmp_path / "pm.toml"
    config_cmd.write_starter(path)
    path.write_text(path.read_text().replace("# concurrency = 8", "concurrency = 12"), encoding="utf-8")
    assert load_settings(path, env={}).worker.concurrency == 12


def test_init_does_not_overwrite_without_force(tmp_path, capsys):
    target = tmp_path / "deep" / "pm.toml"
    assert config_cmd.run(parse("config", "init", str(target)), env={}) == 0  # parents created
    target.write_text("# mine\n", encoding="utf-8")
    with pytest.raises(InputError, match="exists already; use --force"):
        config_cmd.run(parse("config", "init", str(target)), env={})
    assert target.read_text(encoding="utf-8") == "# mine\n"
    assert config_cmd.run(parse("config", "init", str(target), "--force"), env={}) == 0
    assert target.read_text(encoding="utf-8").startswith("# peppol-migrate configuration")


def test_init_into_a_folder_asks_for_a_file_name(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        config_cmd.run(parse("config", "init", str(tmp_path)), env={})


def test_the_parsers_copy_of_the_file_name_agrees_with_the_settings():
    assert config_cmd.CONFIG_FILE_NAME == CONFIG_FILE_NAME
