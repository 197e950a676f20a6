"""Structured logs: every line carries the action, party id and migration id when known.

On a terminal the lines are short and human; elsewhere each line is one JSON object, so an
operator can filter one party's whole story (``jq 'select(.party_id=="0106:...")'``);
``--log-format json|text`` overrides the guess. Log messages never contain a key or secret:
callers log masked values only.

A migration that moves into a state needing a person (``needs_attention``, ``key_rejected``,
``key_expired``) is logged by the worker as a warning: an operator who filters on warnings
must see it.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FIELDS = ("action", "party_id", "migration_id")
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FORMATS = ("json", "text")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(out, ensure_ascii=False)


class HumanFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        parts = [datetime.fromtimestamp(record.created).strftime("%H:%M:%S"), record.levelname.lower()]
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                parts.append(f"{name}={value}")
        parts.append(record.getMessage())
        return " ".join(parts)


def setup_logging(*, level: str = "INFO", json_lines: bool | None = None) -> None:
    """Configure the root logger once, for the CLI. ``json_lines`` None: JSON unless stderr
    is a terminal."""
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else HumanFormatter())
    threshold = logging.getLevelNamesMapping()[level.upper()]
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(threshold)
    for noisy in ("httpx", "httpcore", "alembic", "uvicorn", "uvicorn.access", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The ticker's warnings ("skipped: maximum number of running instances", "missed by") only
    # say that a tick outlasted the poll interval; the next tick claims what is due. Errors show.
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
