"""The setup scripts `make test` runs fail under CI=true when they cannot provide their service.

Each script runs with an empty PATH (no pg_isready, python3, pg_ctlcluster, apt-get, id or
chromium to be found), so it can neither see nor start nor install anything: the machine's
own PostgreSQL and Chromium are left as they are. Under ``CI=true`` the script must exit 1
and say why on stderr; without it, exit 0 and say the tests will skip.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT

BASH = "/bin/bash"
CASES = {
    "ensure-postgres.sh": ("postgres: not running on 127.0.0.1:5432", "the PostgreSQL tests"),
    "ensure-chromium.sh": ("chromium: not installed, and cannot be installed here", "the HTML report test"),
}


def run_stripped(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    return subprocess.run(
        [BASH, str(ROOT / "scripts" / script)],
        env={"PATH": str(empty), "HOME": str(tmp_path), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("script", sorted(CASES))
def test_under_ci_a_missing_service_is_an_error(script, tmp_path):
    what, tests = CASES[script]
    result = run_stripped(script, tmp_path, CI="true")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert what in result.stderr, result.stderr
    assert f"CI=true, so this is an error ({tests} must run in CI)" in result.stderr
    assert "will skip" not in result.stdout + result.stderr


@pytest.mark.parametrize("script", sorted(CASES))
def test_outside_ci_a_missing_service_only_skips_its_tests(script, tmp_path):
    what, tests = CASES[script]
    result = run_stripped(script, tmp_path)
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert what in result.stdout and f"{tests} will skip" in result.stdout, result.stdout
    assert result.stderr == ""
