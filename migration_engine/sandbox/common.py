"""What every sandbox module shares: the error the PSB answers with, party-id parsing."""

from __future__ import annotations

import json
from datetime import datetime

from migration_engine.errors import InputError
from migration_engine.peppol.identifiers import canonical


class SandboxError(Exception):
    """An error the PSB (or a provider) answers with: HTTP status, error code, message."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code or f"API{status}"


def party_id(text: object) -> str:
    """The canonical party id (``ICD:value``) of any notation, or a 400 ``SandboxError``."""
    if not isinstance(text, str):
        raise SandboxError(400, "the party id must be a string")
    try:
        return canonical(text)
    except InputError as exc:
        raise SandboxError(400, str(exc)) from None


def iso(moment: datetime) -> str:
    return moment.isoformat()


def error_body(code: str, message: str, request_id: str, help_link: str, at: datetime) -> bytes:
    """The PSB's error body: ``{code, message, helpLink, requestId, dateTime}``."""
    body = {
        "code": code,
        "message": message,
        "helpLink": f"{help_link}#{code}",
        "requestId": request_id,
        "dateTime": iso(at),
    }
    return json.dumps(body).encode("utf-8")
