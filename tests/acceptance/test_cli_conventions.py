"""The command line's conventions, as a new user meets them: `--version`, bad arguments and
settings answered with exit 2 and what to fix (never a traceback), a closed pipe ending
quietly, a missing database refused rather than created, `db current` and `db history`."""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from migration_engine import __version__
from tests.support import ROOT, TEST_AUDIT_KEY
from tests.support.cli import BIN, peppol_migrate


def refused(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit 2, each of ``words`` in the message, and no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in result.stderr, (word, result.stderr)


@pytest.fixture
def db_env(tmp_path) -> dict[str, str]:
    # Importing writes audit events: the audit key is needed (reading commands do without it).
    return {
        "PEPPOL_MIGRATE_DATABASE__URL": f"sqlite:///{tmp_path / 'conventions.db'}",
        "PEPPOL_MIGRATE_AUDIT__KEY": TEST_AUDIT_KEY,
    }


def test_version() -> None:
    result = peppol_migrate("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"peppol-migrate {__version__}"


def test_a_bad_log_level_is_a_choice() -> None:
    refused(peppol_migrate("--log-level", "verbose", "states"), "--log-level", "VERBOSE", "DEBUG")


def test_the_log_level_is_case_blind_and_the_format_a_choice() -> None:
    assert peppol_migrate("--log-level", "warning", "states").returncode == 0
    refused(peppol_migrate("--log-format", "xml", "states"), "--log-format", "json", "text")


def test_text_logs_when_asked_even_off_a_terminal(tmp_path, db_env) -> None:
    result = peppol_migrate("--log-format", "text", "--log-level", "debug", "status", env=db_env, cwd=tmp_path)
    assert result.returncode == 2 and not result.stderr.lstrip().startswith("{")


@pytest.mark.parametrize("url", ["peppol.db", "/var/lib/peppol.db", "mysql://u@h/db"])
def test_a_database_url_without_a_known_scheme(tmp_path, url) -> None:
    result = peppol_migrate("status", env={"PEPPOL_MIGRATE_DATABASE__URL": url}, cwd=tmp_path)
    refused(result, "database.url", "sqlite:///")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "args", [("status",), ("status", "--json"), ("show", "0106:12345678"), ("report", "--batch", "b"), ("run",)]
)
def test_a_missing_database_is_refused_and_not_created(tmp_path, db_env, args) -> None:
    result = peppol_migrate(*args, env=db_env, cwd=tmp_path)
    refused(result, str(tmp_path / "conventions.db"), "peppol-migrate db upgrade")
    assert not (tmp_path / "conventions.db").exists()


def test_the_default_database_is_not_created_in_another_directory(tmp_path) -> None:
    result = peppol_migrate("status", cwd=tmp_path)
    refused(result, str(tmp_path / "peppol-migrate.db"), "db upgrade")
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_database_names_its_url_without_the_password(tmp_path) -> None:
    url = "postgresql+psycopg://someone:hunter2@127.0.0.1:9/nowhere"  # port 9 (discard): refused at once
    result = peppol_migrate("status", env={"PEPPOL_MIGRATE_DATABASE__URL": url}, cwd=tmp_path, timeout=60)
    refused(result, "cannot reach the database", "127.0.0.1:9/nowhere")
    assert "hunter2" not in result.stderr


def test_db_current_and_history(tmp_path, db_env) -> None:
    history = peppol_migrate("db", "history", env=db_env, cwd=tmp_path)
    assert history.returncode == 0 and "<base> -> 0001" in history.stdout and "(head)" in history.stdout
    # No revision is marked current (a revision's own text may use the word).
    assert not re.search(r"\((?:head, )?current\)", history.stdout) and not (tmp_path / "conventions.db").exists()
    refused(peppol_migrate("db", "current", env=db_env, cwd=tmp_path), "db upgrade")

    assert peppol_migrate("db", "upgrade", env=db_env, cwd=tmp_path).returncode == 0
    current = peppol_migrate("db", "current", env=db_env, cwd=tmp_path)
    assert current.returncode == 0 and current.stdout.strip().endswith("(head)"), current.stdout
    history = peppol_migrate("db", "history", env=db_env, cwd=tmp_path)
    assert "(head, current)" in history.stdout


@pytest.mark.parametrize(
    "args",
    [("status", "--json"), ("show", "0106:50000001"), ("report", "--batch", "b", "--format", "csv")],
    ids=["status", "show", "report"],
)
def test_a_closed_pipe_ends_quietly(tmp_path, db_env, args) -> None:
    """`... | head -c 10`: the reader is gone before the writer writes; no traceback."""
    assert peppol_migrate("db", "upgrade", env=db_env, cwd=tmp_path).returncode == 0
    batch = tmp_path / "b.csv"
    batch.write_text("party_id,direction,new_provider\n0106:50000001,from-econnect,provider-b\n", encoding="utf-8")
    assert peppol_migrate("import", str(batch), "--batch", "b", env=db_env, cwd=tmp_path).returncode == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")} | db_env
    proc = subprocess.Popen([str(BIN), *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as `head` does once it has its bytes
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, stderr
    assert stderr == "", stderr


def test_a_near_miss_variable_is_warned_with_the_right_name(tmp_path) -> None:
    """PEPPOL_MIGRATE_DATABASE_URL (one underscore) is not a setting: a warning says which is."""
    result = peppol_migrate("status", env={"PEPPOL_MIGRATE_DATABASE_URL": "sqlite:///x.db"}, cwd=tmp_path)
    assert "did you mean PEPPOL_MIGRATE_DATABASE__URL?" in result.stderr, result.stderr
    refused(result, "peppol-migrate db upgrade")  # the default database, which does not exist here
    assert not (tmp_path / "x.db").exists() and not (tmp_path / "peppol-migrate.db").exists()


def test_a_misspelt_setting_is_refused_with_a_suggestion(tmp_path) -> None:
    result = peppol_migrate("status", env={"PEPPOL_MIGRATE_PSB__BASEURL": "https://psb.example"}, cwd=tmp_path)
    refused(result, "PEPPOL_MIGRATE_PSB__BASEURL", "PEPPOL_MIGRATE_PSB__BASE_URL")


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("PEPPOL_MIGRATE_WORKER__CONCURRENCY", "0", ("worker.concurrency", "at least 1")),
        ("PEPPOL_MIGRATE_WORKER__POLL_INTERVAL_S", "nan", ("worker.poll_interval_s", "finite")),
        ("PEPPOL_MIGRATE_RETRY__MAX_S", "inf", ("retry.max_s", "finite")),
        ("PEPPOL_MIGRATE_PSB__TIMEOUT_S", "-1", ("psb.timeout_s", "greater than 0")),
        ("PEPPOL_MIGRATE_PSB__BASE_URL", "psb.example", ("psb.base_url", "https://")),
        ("PEPPOL_MIGRATE_PSB__ENVIRONMENT", "staging", ("psb.environment", "acceptance")),
    ],
)
def test_a_bad_value_is_refused_with_the_setting_and_its_source(tmp_path, name, value, words) -> None:
    refused(peppol_migrate("status", env={name: value}, cwd=tmp_path), name, *words)


def test_help_names_the_exit_codes() -> None:
    top = peppol_migrate("--help")
    assert top.returncode == 0 and "141" in top.stdout and "states, to-econnect" in top.stdout
    run = peppol_migrate("run", "--help")
    assert run.returncode == 0
    for code in ("  0 ", "  3 ", "  4 ", "  130 "):
        assert code in run.stdout, run.stdout
