"""`import` through the CLI: any bad row refuses the whole file, says where and why, writes nothing.

One CSV holds a bad row of each of 42 kinds between good rows (``badrows``); JSON lines and
header faults have their own files. Every refusal must exit 2, name each bad line once (and
the column, where one is at fault) with the reason of its kind, and leave the database byte for
byte as it was: the same SQL dump, and the same sha256 of every file of the database (main
file and WAL; the ``-shm`` index is rebuilt by any reader, so it is not compared) and of the
handoff outbox. The same file without its bad rows imports, so the report named exactly the
bad rows. Last, 100,000 rows go through `import` in one process that stays small.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support import ROOT, badrows, engine_env
from tests.support.cli import BIN, as_json, peppol_migrate

ACTIVE = "0106:79999999"
LINE = re.compile(r"^  line (\d+)(?:, column (\w+))?", re.MULTILINE)


@pytest.fixture
def db(tmp_path):
    return tmp_path / "import.db"


@pytest.fixture
def env(db):
    # No PSB call happens in an import: the sandbox URL is never dialled.
    return engine_env(f"sqlite:///{db}", "http://127.0.0.1:9")


def file_hashes(folder: Path) -> dict[str, str]:
    """sha256 of every file the engine may write under ``folder`` (the database, its WAL, an
    outbox folder's files), not the batch files the test wrote at the top."""
    inputs = {f for f in folder.glob("*.csv")}
    return {
        str(f.relative_to(folder)): hashlib.sha256(f.read_bytes()).hexdigest()
        for f in sorted(folder.rglob("*"))
        if f.is_file() and f not in inputs and not f.name.endswith("-shm")
    }


def dump(db: Path) -> str:
    """The whole database as SQL text: equal dumps mean nothing was written."""
    conn = sqlite3.connect(db)
    try:
        return "\n".join(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def prepared(tmp_path, env, db):
    """An upgraded database with one earlier batch whose party is still open."""
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0
    earlier = tmp_path / "earlier.csv"
    earlier.write_text(f"{badrows.HEADER}\n{ACTIVE},from-econnect,,,Earlier,provider-b\n", encoding="utf-8")
    assert peppol_migrate("import", str(earlier), "--batch", "earlier", env=env, cwd=ROOT).returncode == 0
    return dump(db)


def reported_lines(stderr: str) -> dict[int, set[str | None]]:
    found: dict[int, set[str | None]] = {}
    for match in LINE.finditer(stderr):
        found.setdefault(int(match[1]), set()).add(match[2])
    return found


def test_every_kind_of_bad_row_is_named_and_nothing_is_written(tmp_path, env, db, prepared):
    body, bad, good_lines, clean = badrows.build(ACTIVE)
    assert len({b.kind for b in bad.values()}) == len(bad) == 42 and all(b.why for b in bad.values())
    file = tmp_path / "spring.csv"
    file.write_bytes(body)
    status_before = as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))
    hashes_before = file_hashes(tmp_path)
    assert "import.db" in hashes_before

    for extra in ([], ["--dry-run"]):
        result = peppol_migrate("import", str(file), "--batch", "spring", *extra, env=env, cwd=ROOT)
        assert result.returncode == 2, result.stderr
        assert "nothing was imported" in result.stderr and "Traceback" not in result.stderr
        named = reported_lines(result.stderr)
        for line, item in bad.items():
            assert line in named, f"line {line} ({item.kind}) is not in the report:\n{result.stderr}"
            if item.column:
                assert item.column in named[line], f"line {line} ({item.kind}) names {named[line]}"
        assert not set(named) & set(good_lines), "a good row was reported"
        assert set(named) <= set(bad)
        assert badrows.OTHER_KEY not in result.stderr + result.stdout  # a valid key is shown masked

    as_data = peppol_migrate("import", str(file), "--batch", "spring", "--json", env=env, cwd=ROOT)
    assert as_data.returncode == 2
    report = json.loads(as_data.stdout)
    assert report["ok"] is False
    # Exactly one problem per bad line, each the problem of its kind, in the column at fault.
    assert sorted(p["line"] for p in report["problems"]) == sorted(bad)
    kinds = set()
    for p in report["problems"]:
        item = bad[p["line"]]
        assert item.why in p["why"], (item.kind, p["why"])
        assert p["column"] == item.column, (item.kind, p)
        kinds.add(item.kind)
    assert kinds == {b.kind for b in bad.values()}

    assert dump(db) == prepared
    assert file_hashes(tmp_path) == hashes_before, "a refused import changed a file"
    assert as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT)) == status_before

    # Without its bad rows the same file imports: the report named exactly what was wrong.
    fixed = tmp_path / "fixed.csv"
    fixed.write_bytes(clean)
    plan = as_json(peppol_migrate("import", str(fixed), "--batch", "spring", "--dry-run", "--json", env=env, cwd=ROOT))
    assert plan["rows"] == len(good_lines) and plan["dry_run"] is True
    assert dump(db) == prepared
    assert file_hashes(tmp_path) == hashes_before, "a dry run changed a file"
    imported = peppol_migrate("import", str(fixed), "--batch", "spring", env=env, cwd=ROOT)
    assert imported.returncode == 0, imported.stderr
    assert as_json(peppol_migrate("status", "--json", env=env, cwd=ROOT))["total"] == 1 + len(good_lines)


HEADER_FAULTS = {
    "missing required column": (b"party_id,migration_key,name\r\n0106:71000001,,Acme\r\n", "direction"),
    "unknown extra column": (badrows.HEADER.encode() + b",notes\n0106:71000001,from-econnect,,,A,,x\n", "notes"),
    "column twice": (b"party_id,direction,direction\n0106:71000001,from-econnect,from-econnect\n", "direction"),
    "unnamed column": (badrows.HEADER.encode() + b",\n0106:71000001,from-econnect,,,A,,\n", None),
    "no header": (b"0106:71000001,from-econnect,,,A,provider-b\n", None),
    "empty file": (b"", None),
    "UTF-16 file": (badrows.HEADER.encode("utf-16") + "\n0106:71000001,from-econnect,,,,\n".encode("utf-16-le"), None),
}


def test_header_and_encoding_faults_refuse_the_file(tmp_path, env, db, prepared):
    files = {}
    for kind, (body, _) in HEADER_FAULTS.items():
        files[kind] = tmp_path / f"{kind.replace(' ', '-')}.csv"
        files[kind].write_bytes(body)
    # The imports only read the database, so they may run side by side.
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = {kind: pool.submit(peppol_migrate, "import", str(f), env=env, cwd=ROOT) for kind, f in files.items()}
        results = {kind: run.result() for kind, run in runs.items()}
    for kind, (_, column) in HEADER_FAULTS.items():
        result = results[kind]
        assert result.returncode == 2, (kind, result.stdout, result.stderr)
        named = reported_lines(result.stderr)
        assert 1 in named, (kind, result.stderr)
        if column:
            assert column in named[1], (kind, result.stderr)
    assert dump(db) == prepared


def test_bad_json_lines_are_named_too(tmp_path, env, db, prepared):
    rows = [
        ('{"party_id": "0106:72000001", "direction": "from-econnect", "new_provider": "provider-b"}', None),
        ('{"party_id": "0106:72000002", "direction": "from-econnect"', None),  # invalid JSON
        ('["0106:72000003", "from-econnect"]', None),  # not an object
        ('{"party_id": 106, "direction": "from-econnect"}', "party_id"),  # a number
        ('{"party_id": "0106:72000004", "direction": "to-econnect", "direction": "from-econnect"}', "direction"),
        ('{"party_id": "0106:72000005", "direction": "from-econnect", "colour": "blue"}', "colour"),
        ('{"party_id": null, "direction": "from-econnect"}', "party_id"),
        ('{"party_id": "0106:72000006", "direction": "to-econnect", "migration_key": ["11AAbb$$"]}', "migration_key"),
        ('{"party_id": "0106:72000007", "direction": "from-econnect", "name": {"nl": "Acme"}}', "name"),
        ('"0106:72000008"', None),  # a bare string
        ('{"party_id": "0106:72000001", "direction": "from-econnect"}', "party_id"),  # duplicate of line 1
    ]
    file = tmp_path / "spring.jsonl"
    file.write_text("\n".join(text for text, _ in rows) + "\n", encoding="utf-8")
    result = peppol_migrate("import", str(file), env=env, cwd=ROOT)
    assert result.returncode == 2, result.stderr
    named = reported_lines(result.stderr)
    assert set(named) == set(range(2, len(rows) + 1)), result.stderr
    for line, (_, column) in enumerate(rows, 1):
        if column:
            assert column in named[line], (line, result.stderr)
    assert dump(db) == prepared


def run_measured(args: list[str], env: dict[str, str]) -> tuple[int, str, float]:
    """Run the CLI, returning its exit code, its output and its own peak memory in MiB."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")} | env
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([str(BIN), *args], env=full_env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return proc.returncode, out.read(), usage.ru_maxrss / 1024


@pytest.mark.slow
def test_100k_rows_import_streaming(tmp_path, env, db):
    file = tmp_path / "big.csv"
    with file.open("w", encoding="utf-8", newline="") as fh:
        fh.write(badrows.HEADER + "\n")
        for i in range(100_000):
            party = f"0106:{10000000 + i}"
            if i % 2:
                fh.write(f"{party},from-econnect,,,Party {i},provider-b\n")
            else:
                fh.write(f"{party},to-econnect,{badrows.KEY},default,Party {i},\n")
    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT).returncode == 0

    code, output, peak_mib = run_measured(["import", str(file), "--batch", "big"], env)
    assert code == 0, output[-2000:]
    assert "imported 100000 parties into batch big" in output
    assert badrows.KEY not in output
    # The rows are streamed: the process stays far below what holding 100k rows would take.
    assert peak_mib < 250, f"import took {peak_mib:.0f} MiB"

    status = as_json(peppol_migrate("status", "--batch", "big", "--json", env=env, cwd=ROOT))
    assert status["total"] == 100_000
    assert status["by_direction"]["to-econnect"]["requested"] == 50_000
