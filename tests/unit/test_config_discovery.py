"""Which config file counts (the documented order) and how relative paths in it resolve.

Order: --config, PEPPOL_MIGRATE_CONFIG, ./peppol-migrate.toml, then the user's
${XDG_CONFIG_HOME}/peppol-migrate/ file (default under ~/.config). Relative paths in a file
resolve against the file's folder; from the environment, against the working directory.
"""

from pathlib import Path

import pytest

from migration_engine.errors import ConfigError
from migration_engine.settings import (
    ConfigChoice,
    Settings,
    discover_config,
    load_settings,
    resolve_settings,
    sqlite_url_against,
)


def write(path: Path, concurrency: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"[worker]\nconcurrency = {concurrency}\n", encoding="utf-8")
    return path


def found(explicit, env, cwd) -> ConfigChoice:
    choice = discover_config(explicit, env, cwd)
    assert choice is not None
    return choice


@pytest.fixture
def four(tmp_path):
    """A file at each step of the discovery order, each with its own concurrency."""
    cwd = tmp_path / "work"
    explicit = write(tmp_path / "explicit.toml", 1)
    named = write(tmp_path / "named.toml", 2)
    local = write(cwd / "peppol-migrate.toml", 3)
    xdg = tmp_path / "xdg"
    user = write(xdg / "peppol-migrate" / "config.toml", 4)
    env = {"PEPPOL_MIGRATE_CONFIG": str(named), "XDG_CONFIG_HOME": str(xdg)}
    return {"cwd": cwd, "explicit": explicit, "named": named, "local": local, "user": user, "env": env}


def test_the_order_is_flag_variable_working_directory_user(four):
    cwd, env = four["cwd"], dict(four["env"])
    assert found(four["explicit"], env, cwd).path == four["explicit"]
    assert found(None, env, cwd).path == four["named"]
    del env["PEPPOL_MIGRATE_CONFIG"]
    assert found(None, env, cwd).path == four["local"]
    four["local"].unlink()
    choice = found(None, env, cwd)
    assert choice.path == four["user"] and choice.found_by.startswith("$XDG_CONFIG_HOME")
    four["user"].unlink()
    assert discover_config(None, env, cwd) is None


def test_only_the_first_file_is_read(four):
    loaded = resolve_settings(None, env=four["env"], cwd=four["cwd"])
    assert loaded.settings.worker.concurrency == 2
    assert loaded.config is not None and loaded.config.found_by == "PEPPOL_MIGRATE_CONFIG"
    assert str(loaded.sources["worker.concurrency"]) == str(four["named"])


def test_the_user_file_defaults_to_home_dot_config(tmp_path):
    user = write(tmp_path / ".config" / "peppol-migrate" / "config.toml", 5)
    choice = found(None, {"HOME": str(tmp_path)}, None)
    assert choice.path == user and choice.found_by.startswith("~/.config")


def test_a_relative_xdg_config_home_is_ignored_as_the_spec_says(tmp_path):
    write(tmp_path / ".config" / "peppol-migrate" / "config.toml", 5)
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": "relative/dir"}
    assert found(None, env, None).path == tmp_path / ".config" / "peppol-migrate" / "config.toml"


def test_a_named_file_must_exist_and_the_message_says_who_named_it(tmp_path):
    with pytest.raises(ConfigError, match=r"missing.toml \(from --config\) does not exist"):
        discover_config(tmp_path / "missing.toml", {}, tmp_path)
    with pytest.raises(ConfigError, match=r"\(from PEPPOL_MIGRATE_CONFIG\) does not exist"):
        discover_config(None, {"PEPPOL_MIGRATE_CONFIG": str(tmp_path / "gone.toml")}, tmp_path)
    with pytest.raises(ConfigError, match="is not a file"):
        discover_config(tmp_path, {}, tmp_path)


def test_a_relative_config_flag_is_relative_to_the_working_directory(tmp_path):
    f = write(tmp_path / "sub" / "c.toml", 6)
    assert found("sub/c.toml", {}, tmp_path).path == f


def test_a_caller_with_its_own_environment_is_not_affected_by_the_working_directory(tmp_path):
    write(tmp_path / "peppol-migrate.toml", 7)
    assert load_settings(env={}) == Settings()
    assert load_settings(env={}, cwd=tmp_path).worker.concurrency == 7


def test_without_a_file_the_sources_list_where_discovery_looked(tmp_path):
    loaded = resolve_settings(None, env={"HOME": str(tmp_path / "home")}, cwd=tmp_path)
    assert loaded.config is None
    assert loaded.searched == (
        f"{tmp_path / 'peppol-migrate.toml'} (./peppol-migrate.toml in the working directory)",
        f"{tmp_path / 'home' / '.config' / 'peppol-migrate' / 'config.toml'} (~/.config/peppol-migrate/config.toml)",
    )
    assert {str(s) for s in loaded.sources.values()} == {"default", "psb.environment (acceptance)"}


# --- relative paths -------------------------------------------------------------------------


def test_relative_paths_in_a_file_resolve_against_its_folder_from_any_working_directory(tmp_path):
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "profiles").mkdir()
    (tmp_path / "elsewhere").mkdir()
    f = folder / "pm.toml"
    f.write_text(
        '[database]\nurl = "sqlite:///data/pm.db"\n[handoff]\noutbox_dir = "out"\n[profiles]\ndir = "profiles"\n',
        encoding="utf-8",
    )
    for cwd in (tmp_path, folder, tmp_path / "elsewhere"):
        s = load_settings("../etc/pm.toml" if cwd.name == "elsewhere" else f, env={}, cwd=cwd)
        assert s.database.url == f"sqlite:///{folder / 'data' / 'pm.db'}"
        assert s.handoff.outbox_dir == str(folder / "out")
        assert s.profiles.dir == str(folder / "profiles")


def test_relative_paths_from_the_environment_stay_relative_to_the_working_directory(tmp_path):
    f = tmp_path / "pm.toml"
    f.write_text('[handoff]\noutbox_dir = "from-file"\n', encoding="utf-8")
    env = {
        "PEPPOL_MIGRATE_DATABASE__URL": "sqlite:///rel.db",
        "PEPPOL_MIGRATE_HANDOFF__OUTBOX_DIR": "out",
        "PEPPOL_MIGRATE_PROFILES__DIR": "config/profiles",
    }
    s = load_settings(f, env=env)
    assert (s.database.url, s.handoff.outbox_dir, s.profiles.dir) == ("sqlite:///rel.db", "out", "config/profiles")


def test_absolute_and_home_paths_in_a_file(tmp_path):
    f = tmp_path / "pm.toml"
    f.write_text('[handoff]\noutbox_dir = "/srv/outbox"\n[profiles]\ndir = "~/profiles"\n', encoding="utf-8")
    s = load_settings(f, env={})
    assert s.handoff.outbox_dir == "/srv/outbox"
    assert s.profiles.dir == str(Path("~/profiles").expanduser())


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:///pm.db", "sqlite:////base/pm.db"),
        ("sqlite+pysqlite:///data/pm.db?timeout=5", "sqlite+pysqlite:////base/data/pm.db?timeout=5"),
        ("sqlite:////abs/pm.db", "sqlite:////abs/pm.db"),
        ("sqlite://", "sqlite://"),
        ("sqlite:///:memory:", "sqlite:///:memory:"),
        ("sqlite:///file:pm.db?mode=ro&uri=true", "sqlite:///file:pm.db?mode=ro&uri=true"),
        ("postgresql+psycopg://pm@db/pm", "postgresql+psycopg://pm@db/pm"),
    ],
)
def test_only_a_relative_sqlite_path_is_rebased(url, expected):
    assert sqlite_url_against(url, Path("/base")) == expected
