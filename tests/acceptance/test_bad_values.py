"""Values Python itself cannot take end in exit 2 with what and where, never in a traceback.

Each case once crashed the CLI: a JSON number longer than Python converts to an ``int``; a
lone UTF-16 surrogate in a JSON string, which ``--dry-run`` passed and the write then could
not encode; a key for ``key set`` that is not UTF-8. Each must be refused before anything
is written, with the file's line and column (or the argument) named, and the database left
as it was; and ``--dry-run`` must refuse exactly what the real import refuses.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, engine_env
from tests.support.cli import BIN, peppol_migrate

INBOUND = "0106:71000001"
GOOD = '{"party_id": "0106:71000002", "direction": "from-econnect", "new_provider": "provider-b"}'


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bad-values.db"


@pytest.fixture
def env(db: Path) -> dict[str, str]:
    return engine_env(f"sqlite:///{db}", "http://127.0.0.1:9")  # no PSB call is made


def dump(db: Path) -> str:
    """The whole database as SQL text: equal dumps mean nothing was written."""
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def prepared(tmp_path: Path, env: dict[str, str], db: Path) -> str:
    """An upgraded database with one inbound party waiting for its key; its dump."""
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    earlier = tmp_path / "earlier.csv"
    earlier.write_text(f"party_id,direction\n{INBOUND},to-econnect\n", encoding="utf-8")
    result = peppol_migrate("import", str(earlier), "--batch", "earlier", env=env, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    return dump(db)


def refused_import(file: Path, env: dict[str, str], db: Path, before: str) -> list[str]:
    """Run ``import`` with and without ``--dry-run``: both exit 2, clean, with the same report."""
    reports = []
    for extra in (["--dry-run"], []):
        result = peppol_migrate("import", str(file), "--batch", "bad", *extra, env=env, cwd=ROOT)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert f"{file}: 1 problem(s); nothing was imported" in result.stderr
        reports.append([line for line in result.stderr.splitlines() if line.startswith("  line ")])
        assert dump(db) == before
    assert reports[0] == reports[1], "--dry-run and the import disagree"
    return reports[0]


def test_a_number_too_long_for_python_is_refused_in_its_column(tmp_path, env, db, prepared):
    file = tmp_path / "huge.jsonl"
    huge = "7" * 5000  # past sys.get_int_max_str_digits() (4300), where int() raises ValueError
    file.write_text(f'{GOOD}\n{{"party_id": "0106:71000003", "direction": "from-econnect", "name": {huge}}}\n')
    assert refused_import(file, env, db, prepared) == [
        "  line 2, column name: must be a string or null, not a number (5000 digits)"
    ]


def test_a_lone_surrogate_is_refused_by_the_dry_run_too(tmp_path, env, db, prepared):
    file = tmp_path / "surrogate.jsonl"
    # Valid JSON, and json.loads accepts it, but the string is not text: UTF-8 cannot encode it.
    file.write_text(
        f"{GOOD}\n{GOOD.replace('71000002', '71000004')}\n"
        '{"party_id": "0106:71000005", "direction": "from-econnect", "name": "Acme \\ud800 BV"}\n'
    )
    (report,) = refused_import(file, env, db, prepared)
    assert report.startswith("  line 3, column name, value ")
    assert "character 6 is \\ud800, half of a UTF-16 surrogate pair" in report


def key_set(key_arg: bytes, env: dict[str, str], stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """``key set`` with raw bytes (tests.support.cli's helper only passes text)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
    full_env.update(env)
    return subprocess.run(
        [str(BIN), "key", "set", INBOUND, key_arg],
        input=stdin or b"",
        env=full_env,
        cwd=ROOT,
        capture_output=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(
    ("key_arg", "stdin", "where"),
    [
        (b"-", b"11AAbb$$\xff1AAbb$$\n", "the key read from standard input (-) is not UTF-8 (byte 0xff at position 9)"),
        (b"11AAbb$$\xfe1AAbb$$", None, "the key is not UTF-8 text (byte 0xfe at position 9)"),
    ],
    ids=["stdin", "argument"],
)
def test_a_key_that_is_not_utf8_is_refused_without_showing_it(key_arg, stdin, where, env, db, prepared):
    result = key_set(key_arg, env, stdin)
    stderr = result.stderr.decode("utf-8", "backslashreplace")
    assert result.returncode == 2, stderr
    assert stderr == f"error: key for {INBOUND}: {where}\n"
    assert dump(db) == prepared
    # The same key, valid bytes instead of the bad one, is taken: the refusal was about the bytes alone.
    fixed = key_set(b"-", env, b"11AAbb$$11AAbb$$\n")
    assert fixed.returncode == 0, fixed.stderr
    assert dump(db) != prepared
