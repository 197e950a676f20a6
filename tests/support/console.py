"""The console for tests: users with hashed passwords, a session key, `peppol-migrate serve` as a
process, and headless Chromium through Playwright (Debian's chromium, never a downloaded one)."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from migration_engine.console.auth import hash_secret
from tests.support.chromium import chromium
from tests.support.cli import BIN

SESSION_KEY = "console-session-key-for-tests-0123456789"
PASSWORDS = {"alice": "alice-password-1", "victor": "victor-password-1", "root": "root-password-12"}
ROLES = {"alice": "operator", "victor": "viewer", "root": "admin"}
TOKEN = "api-token-for-tests-0123456789"


def users_file(folder: Path) -> Path:
    """A users file with alice (operator), victor (viewer), root (admin) and one API token."""
    lines = []
    for name, password in PASSWORDS.items():
        hashed = hash_secret(password)
        lines += ["[[user]]", f'name = "{name}"', f'role = "{ROLES[name]}"', f'password_hash = "{hashed}"']
    lines += ["[[token]]", 'name = "backoffice"', 'role = "operator"', f'token_hash = "{hash_secret(TOKEN)}"']
    path = folder / "users.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def console_env(folder: Path) -> dict[str, str]:
    return {
        "PEPPOL_MIGRATE_CONSOLE__USERS_FILE": str(users_file(folder)),
        "PEPPOL_MIGRATE_CONSOLE__SESSION_KEY": SESSION_KEY,
        "PEPPOL_MIGRATE_CONSOLE__REFRESH_S": "2",
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    url: str
    process: subprocess.Popen[str]


@contextmanager
def serving(env: dict[str, str], cwd: Path) -> Iterator[Served]:
    """`peppol-migrate serve` on a free loopback port, until the block ends; ready once uvicorn
    says so on standard error (read line by line: no sleeping)."""
    port = free_port()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
    full_env.update(env)
    process = subprocess.Popen(
        [str(BIN), "serve", "--port", str(port)],
        env=full_env,
        cwd=cwd,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    seen = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            seen.append(line)
            if "Application startup complete" in line:
                break
        else:
            raise AssertionError("serve exited before it served:\n" + "".join(seen))
        # Keep reading its log (access lines), so a full pipe never stalls the server.
        threading.Thread(target=seen.extend, args=(process.stderr,), daemon=True).start()
        yield Served(f"http://127.0.0.1:{port}", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def chromium_or_skip() -> str:
    """Debian's chromium; a skip without it, a failure under CI=true (scripts/ensure-chromium.sh)."""
    found = chromium()
    if found is None:
        message = "chromium is not installed (scripts/ensure-chromium.sh installs Debian's package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return found


def playwright_or_skip():
    """Playwright's sync API (the dev extra); like chromium: under CI=true its absence fails."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        message = "playwright is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return sync_playwright
