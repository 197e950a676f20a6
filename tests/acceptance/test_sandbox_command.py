"""`peppol-migrate sandbox` as a user starts it: a parties file is registered (or refused with its
line numbers, exit 2, no traceback), and the export lines it prints point a second shell's
`peppol-migrate` at it well enough for import, run --until-idle and status to finish a batch."""

from __future__ import annotations

import os
import queue
import shlex
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest

from tests.support import ROOT, TEST_AUDIT_KEY, TEST_KEK
from tests.support.cli import BIN, as_json, peppol_migrate

START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def lines_of(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line.rstrip("\n"))
    into.put(None)  # the stream closed: the process ended


@pytest.fixture
def start_sandbox() -> Iterator:
    """Start `peppol-migrate sandbox ARGS...`; every process started is killed at the end."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> tuple[subprocess.Popen[str], queue.Queue, queue.Queue]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
        proc = subprocess.Popen(
            [str(BIN), "sandbox", *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(proc)
        out: queue.Queue = queue.Queue()
        err: queue.Queue = queue.Queue()
        threading.Thread(target=lines_of, args=(proc.stdout, out), daemon=True).start()
        threading.Thread(target=lines_of, args=(proc.stderr, err), daemon=True).start()
        return proc, out, err

    yield start
    for proc in started:
        proc.kill()
        proc.wait(timeout=10)


def read_until(lines: queue.Queue, done, timeout_s: float = START_TIMEOUT_S) -> list[str]:
    """Lines until one for which ``done`` is true (included); each wait bounded."""
    seen: list[str] = []
    while True:
        line = lines.get(timeout=timeout_s)
        assert line is not None, f"the sandbox ended early; it printed: {seen}"
        seen.append(line)
        if done(line):
            return seen


def test_a_bad_parties_file_is_refused_with_its_line_numbers(tmp_path):
    parties = tmp_path / "parties.csv"
    parties.write_text("party_id,provider\n0106:50000001,econnect\n0106:12,provider-b\n0106:50000003,\n")
    result = peppol_migrate("sandbox", "--parties", str(parties), "--dns-port", "-1", cwd=ROOT, timeout=60)
    assert result.returncode == 2
    assert "line 3: party_id '0106:12'" in result.stderr
    assert "line 4: provider is empty" in result.stderr
    assert "Traceback" not in result.stderr
    assert "registered" not in result.stdout


def test_the_printed_lines_point_the_cli_at_the_sandbox(tmp_path, start_sandbox):
    parties = tmp_path / "parties.csv"
    parties.write_text(
        "party_id,provider,document_types\n"
        "0106:50000001,provider-b,\n"
        "0106:50000002,provider-b,\n"
        "0106:50000003,econnect,invoices\n"
        "0106:50000004,econnect,\n"
    )
    batch = tmp_path / "batch.csv"
    port = free_port()
    proc, out, err = start_sandbox(
        "--port", str(port), "--dns-port", "-1", "--parties", str(parties), "--batch-out", str(batch)
    )
    printed = read_until(out, lambda line: line.startswith("# plus"))
    assert any("registered 4 parties" in line and "2 econnect, 2 provider-b" in line for line in printed)
    assert any(f"wrote the batch {batch}" in line for line in printed)
    read_until(err, lambda line: "Uvicorn running on" in line)  # the port accepts connections now

    env = {}
    for line in printed:
        if line.startswith("export "):
            name, _, quoted = line.removeprefix("export ").partition("=")
            [env[name]] = shlex.split(quoted)
    assert env["PEPPOL_MIGRATE_PSB__BASE_URL"] == f"http://127.0.0.1:{port}"
    assert env["PEPPOL_MIGRATE_PSB__CLIENT_SECRET"] == "sandbox-secret"  # the public sandbox credential
    assert "PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY" not in env  # the user's own secret: never printed
    assert "PEPPOL_MIGRATE_AUDIT__KEY" not in env
    env["PEPPOL_MIGRATE_DATABASE__URL"] = f"sqlite:///{tmp_path / 'try.db'}"
    env["PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY"] = TEST_KEK
    env["PEPPOL_MIGRATE_AUDIT__KEY"] = TEST_AUDIT_KEY

    assert peppol_migrate("db", "upgrade", env=env, cwd=ROOT, timeout=60).returncode == 0
    imported = peppol_migrate("import", str(batch), "--batch", "try", env=env, cwd=ROOT, timeout=60)
    assert imported.returncode == 0, imported.stderr
    run = peppol_migrate("run", "--until-idle", env=env, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    status = as_json(peppol_migrate("status", "--batch", "try", "--json", env=env, cwd=ROOT, timeout=60))
    assert status["by_direction"]["to-econnect"]["completed"] == 2
    assert status["by_direction"]["from-econnect"]["completed"] == 2
    assert proc.poll() is None  # served throughout
