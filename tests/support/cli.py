"""Running the installed `peppol-migrate` console script as a user would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent / "peppol-migrate"


def peppol_migrate(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    exe = str(BIN) if BIN.exists() else shutil.which("peppol-migrate")
    assert exe, "the peppol-migrate console script is not installed"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PEPPOL_MIGRATE_")}
    full_env.update(env or {})
    return subprocess.run(
        [exe, *args], env=full_env, cwd=cwd, input=input, capture_output=True, text=True, timeout=timeout, check=False
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
