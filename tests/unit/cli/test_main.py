"""The command line's own module: the names it keeps to stay quick agree with their sources,
and `--help` and `--version` load none of the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

from migration_engine.backoffice import actions, report_formats
from migration_engine.cli import backoffice, main
from migration_engine.settings import ENV_PREFIX

HEAVY = ("sqlalchemy", "alembic", "httpx", "rich", "apscheduler", "migration_engine.sandbox", "starlette")


def test_the_parsers_copies_agree_with_their_sources() -> None:
    assert main.ACTIONS == actions.ACTIONS
    assert main.ENV_PREFIX == ENV_PREFIX
    assert backoffice.REPORT_FORMATS == report_formats.FORMATS


def loaded_after(*argv: str) -> set[str]:
    """The heavy modules loaded by a fresh interpreter that runs the CLI with ``argv``."""
    script = (
        "import sys\n"
        "from migration_engine.cli.main import main\n"
        "try:\n"
        f"    main({list(argv)!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(' '.join(m for m in sys.modules if m.startswith({HEAVY!r})), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stderr.split())


def test_help_and_version_load_no_heavy_library() -> None:
    assert loaded_after("--help") == set()
    assert loaded_after("--version") == set()
    assert loaded_after("run", "--help") == set()


def test_the_parser_knows_every_command() -> None:
    parser = main.build_parser()
    for argv in (["db", "current"], ["db", "history"], ["run", "--until-settled"], ["run", "--until-idle"]):
        assert parser.parse_args(argv).command == argv[0]
    assert set(main.HANDLERS) >= {"db", "run", "status", "show", "report", *main.ACTIONS}
