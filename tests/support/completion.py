"""Asking a console script for shell completions as bash's argcomplete hook does.

The hook runs the script with ``_ARGCOMPLETE=1`` (the words start at the first, the script),
the line typed so far in ``COMP_LINE``, the cursor in ``COMP_POINT``, and reads the answer,
separated by ``_ARGCOMPLETE_IFS`` (a vertical tab), from file descriptor 8, or from the file
named by ``_ARGCOMPLETE_STDOUT_FILENAME`` (argcomplete's own tests use the file).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

IFS = "\013"


def completions(exe: Path, line: str, *, env: dict[str, str], cwd: Path | None = None) -> list[str]:
    """The completions ``exe`` offers for ``line`` with the cursor at its end, sorted; the
    script must exit 0 and print nothing on standard output (the shell would show it)."""
    with tempfile.TemporaryDirectory() as tmp:
        answer = Path(tmp) / "completions"
        done = subprocess.run(
            [str(exe)],
            env={
                **env,
                "_ARGCOMPLETE": "1",
                "_ARGCOMPLETE_SHELL": "bash",
                "_ARGCOMPLETE_IFS": IFS,
                "_ARGCOMPLETE_STDOUT_FILENAME": str(answer),
                "COMP_LINE": line,
                "COMP_POINT": str(len(line)),
                "COMP_TYPE": "9",  # a Tab
            },
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (done.returncode, done.stdout) == (0, ""), done.stderr
        text = answer.read_text(encoding="utf-8")
    return sorted(word.strip() for word in text.split(IFS) if word.strip())
