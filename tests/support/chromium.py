"""Headless Chromium for the HTML report tests: the DOM a page renders to.

Chromium is installed by ``scripts/ensure-chromium.sh`` (which `make test` runs). Without it
a test skips, except under CI=true where it fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def rendered_dom(page: Path, profile_dir: Path) -> str:
    """The DOM of ``page`` after Chromium rendered it (``--dump-dom``), nothing fetched from outside."""
    browser = chromium()
    if browser is None:
        message = "chromium is not installed (scripts/ensure-chromium.sh installs Debian's package)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    rendered = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile_dir}",
            "--dump-dom",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert rendered.returncode == 0, rendered.stderr[-2000:]
    return rendered.stdout
