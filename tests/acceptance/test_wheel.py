"""The wheel works anywhere: built from a copy of the checkout, installed without the sandbox
extra into a fresh virtual environment (a production install, its dependencies from the
package index or pip's cache), and run from a directory unrelated to the checkout with a
clean environment. That console script shows its version and its packaged defaults, creates
a SQLite database, imports a batch with inbound and outbound rows, migrates it against the
sandbox (served by this test process; the production install needs no sandbox package to talk
to it) and reports every party completed. `peppol-migrate sandbox` there says which extra to
install, without a traceback; shell completion works there (argcomplete is a dependency).

Slow (about 15 s on a warm pip cache: a wheel build, a venv, an install); one xdist group so
two workers never build and install at once."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import migration_engine
from migration_engine.sandbox.client_env import client_env
from tests.support import ROOT, TEST_KEK, kvk, seed_batch
from tests.support.completion import completions

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("wheel")]

PIP_TIMEOUT_S = 600.0  # a cold pip cache downloads the dependencies
CLI_TIMEOUT_S = 120.0
SANDBOX_ONLY = ("dnslib",)  # starlette and uvicorn are the console's, installed with the package

# Not copied into the build tree: what a clean clone does not have, and what a build leaves.
NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".mypy_cache",
    ".ruff_cache",
    ".pytest_cache",
    ".import_linter_cache",
    "demo-output",
    "outbox",
    "*.db",
    "*.sqlite",
)


@dataclass(frozen=True)
class Install:
    """A fresh virtual environment with the wheel installed, and a home and working directory
    of its own, none of them inside the checkout."""

    bin: Path
    home: Path
    work: Path

    def env(self, **settings: str) -> dict[str, str]:
        """A clean environment: the venv's scripts and the system's on PATH, nothing of the
        checkout or the test's own environment (no PYTHONPATH, no VIRTUAL_ENV)."""
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.defpath}",
            "HOME": str(self.home),
            "TMPDIR": tempfile.gettempdir(),
            "LANG": "C.UTF-8",
            **settings,
        }

    def run(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin / "peppol-migrate"), *args],
            env=env if env is not None else self.env(),
            cwd=self.work,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_S,
            check=False,
        )


def pip_env() -> dict[str, str]:
    """The test's environment for pip (its caches, index and proxy settings), less what would
    point Python at the checkout or the dev virtual environment."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    return {k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("PEPPOL_MIGRATE_")}


def checked(cmd: list[str], *, cwd: Path) -> None:
    done = subprocess.run(
        cmd, cwd=cwd, env=pip_env(), capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT.resolve()), "the temporary directory is inside the checkout"
    # A copy of the checkout, so the build's own files (build/, *.egg-info) stay out of it.
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE, symlinks=True)
    dist = base / "dist"
    pip = ["-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
    checked([sys.executable, *pip, "wheel", "--no-deps", "-w", str(dist), str(source)], cwd=base)
    wheels = list(dist.glob("peppol_migrate-*.whl"))
    assert [w.name for w in wheels] == [f"peppol_migrate-{migration_engine.__version__}-py3-none-any.whl"]
    shutil.rmtree(source)

    venv = base / "venv"
    checked([sys.executable, "-m", "venv", str(venv)], cwd=base)
    checked([str(venv / "bin" / "python"), *pip, "install", "--no-compile", str(wheels[0])], cwd=base)
    home, work = base / "home", base / "work"
    home.mkdir()
    work.mkdir()
    yield Install(bin=venv / "bin", home=home, work=work)


def test_the_installed_wheel_imports_its_own_copy_and_no_sandbox_server(install):
    probe = (
        "import importlib.util, json, sys, migration_engine\n"
        "print(json.dumps({'file': migration_engine.__file__, 'path': sys.path,\n"
        f"    'sandbox_only': [m for m in {SANDBOX_ONLY!r} if importlib.util.find_spec(m)]}}))\n"
    )
    done = subprocess.run(
        [str(install.bin / "python"), "-c", probe],
        env=install.env(),
        cwd=install.work,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    )
    found = json.loads(done.stdout)
    venv = install.bin.parent.resolve()
    assert Path(found["file"]).resolve().is_relative_to(venv)
    assert not [p for p in found["path"] if p and Path(p).resolve().is_relative_to(ROOT.resolve())]
    assert found["sandbox_only"] == []


def test_the_installed_wheel_migrates_a_batch_against_the_sandbox(install, sandbox):
    version = install.run("--version")
    assert (version.returncode, version.stdout.strip()) == (0, f"peppol-migrate {migration_engine.__version__}")

    secret = "wheel-test-client-secret-not-to-be-shown"
    shown = install.run("config", "show", env=install.env(PEPPOL_MIGRATE_PSB__CLIENT_SECRET=secret))
    assert shown.returncode == 0, shown.stderr
    assert secret not in shown.stdout
    assert "# client_secret: (set)" in shown.stdout
    assert 'dir = ""' in shown.stdout and "the profiles shipped with peppol-migrate" in shown.stdout
    assert 'environment = "acceptance"' in shown.stdout  # the packaged default.toml
    assert "# config file: none" in shown.stdout and str(install.work) in shown.stdout

    env = install.env(
        **client_env(
            sandbox.url,
            db_url="sqlite:///wheel.db",  # relative: in the working directory
            encryption_key=TEST_KEK,
            poll_interval_s=0.1,
            takeover_poll_s=0.2,
            takeover_poll_max_s=0.5,
        )
    )
    assert env["PEPPOL_MIGRATE_PROFILES__DIR"] == ""  # the profiles come from the wheel

    upgraded = install.run("db", "upgrade", env=env)
    assert upgraded.returncode == 0, upgraded.stderr
    assert (install.work / "wheel.db").is_file()

    inbound, outbound = [kvk(700 + i) for i in range(3)], [kvk(750 + i) for i in range(3)]
    seed_batch(sandbox.model, install.work / "batch.csv", inbound=inbound, outbound=outbound)
    imported = install.run("import", "batch.csv", "--batch", "wheel", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "imported 6 parties into batch wheel" in imported.stdout

    ran = install.run("run", "--until-idle", env=env)
    assert ran.returncode == 0, ran.stderr

    status = install.run("status", "--batch", "wheel", "--json", env=env)
    assert status.returncode == 0, status.stderr
    counts = json.loads(status.stdout)
    assert counts["total"] == 6
    nonzero = {d: {s: n for s, n in by_state.items() if n} for d, by_state in counts["by_direction"].items()}
    assert nonzero == {"to-econnect": {"completed": 3}, "from-econnect": {"completed": 3}}
    assert "Traceback" not in ran.stderr + status.stderr


def test_the_sandbox_command_asks_for_its_extra(install):
    done = install.run("sandbox", "--port", "0", "--dns-port", "-1")
    assert done.returncode == 2
    assert "pip install 'peppol-migrate[sandbox]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_production_install_completes_commands(install):
    exe = install.bin / "peppol-migrate"
    assert completions(exe, "peppol-migrate st", env=install.env(), cwd=install.work) == ["states", "status"]
