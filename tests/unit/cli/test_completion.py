"""Shell completion (argcomplete): the installed ``peppol-migrate`` answers a shell's request for
completions with its commands and options, bash's registration line drives it, argcomplete's
global completion accepts the script, and a normal start does not load argcomplete."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.cli import BIN
from tests.support.completion import completions

BIN_DIR = Path(sys.executable).parent


def env() -> dict[str, str]:
    return {
        "PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
        "HOME": os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
    }


def test_the_commands_complete():
    assert completions(BIN, "peppol-migrate st", env=env()) == ["states", "status"]
    assert completions(BIN, "peppol-migrate db ", env=env()) == ["--help", "-h", "current", "history", "upgrade"]
    assert {"import", "run", "status", "config", "sandbox"} <= set(completions(BIN, "peppol-migrate ", env=env()))


def test_the_options_of_a_command_complete():
    assert completions(BIN, "peppol-migrate run --until-", env=env()) == ["--until-idle", "--until-settled"]
    assert completions(BIN, "peppol-migrate --log-format ", env=env()) == ["json", "text"]


def test_bash_completes_through_the_registered_hook():
    bash = shutil.which("bash")
    register = BIN_DIR / "register-python-argcomplete"
    if bash is None or not register.exists():
        pytest.skip("needs bash and argcomplete's register-python-argcomplete")
    script = (
        'eval "$(register-python-argcomplete peppol-migrate)"\n'
        'COMP_LINE="peppol-migrate st"; COMP_POINT=${#COMP_LINE}; COMP_WORDS=(peppol-migrate st); COMP_CWORD=1\n'
        "_python_argcomplete peppol-migrate\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", script], env=env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.split()) == ["states", "status"]


def test_argcomplete_global_completion_accepts_the_script():
    """What `activate-global-python-argcomplete`'s hook checks before it asks a console script:
    the PYTHON_ARGCOMPLETE_OK marker at the top of the module the script runs."""
    check = [sys.executable, "-m", "argcomplete._check_console_script", str(BIN)]
    done = subprocess.run(check, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_a_normal_start_does_not_load_argcomplete():
    script = (
        "import sys\n"
        "from migration_engine.cli.main import main\n"
        "for argv in (['peppol-migrate', '--help'], ['peppol-migrate', '--version']):\n"
        "    sys.argv = argv\n"
        "    try:\n"
        "        main()\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print('argcomplete' in sys.modules, file=sys.stderr)\n"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("_ARGCOMPLETE", "COMP_"))}
    done = subprocess.run([sys.executable, "-c", script], env=clean, capture_output=True, text=True, timeout=60)
    assert done.stderr.strip() == "False"
