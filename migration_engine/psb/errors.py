"""From an HTTP answer to one ``PsbError``: parsing, classification, scrubbing of secrets.

Pure functions, no I/O: ``client.py`` hands in the status, the body bytes and the headers.

The PSB's error body (``docs/psb-contract.md``, "Errors"; as eConnect's .NET client parses it)::

    {"code": "API403", "message": "...", "helpLink": "...", "requestId": "...", "dateTime": "..."}

A body that is not JSON gets the client-made code ``PSB{status}.JSON02`` (the .NET client's
convention) and a short excerpt. JSON in another shape (OAuth's ``error_description``,
problem+json's ``detail``) is read leniently: the PSB's documentation is silent on most
error bodies, so we keep whatever message the server gave.

Classification is by status only, never by a code our sandbox invented:

    2xx                  success (not an error)
    408, 429, 5xx        PsbTransientError (``retry_after_s`` from Retry-After)
    401, 403             PsbAuthError (``client.py`` refreshes the token once on 401 first)
    404                  PsbNotFound
    409                  PsbConflict
    anything else        PsbPermanentError
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from urllib.parse import quote, quote_plus

from migration_engine.errors import (
    PsbAuthError,
    PsbConflict,
    PsbError,
    PsbNotFound,
    PsbPermanentError,
    PsbTransientError,
)
from migration_engine.keys import mask

EXCERPT_CHARS = 160
REDACTED = "***"


class Scrubber:
    """Removes the secrets of one call from any text the server sends back.

    Secrets (token, client secret, password, subscription key) become ``***``; a migration
    key becomes ``keys.mask(key)``, so an operator can still tell which key was refused.
    URL- and form-encoded forms are caught too, as a server may echo what it received.
    """

    def __init__(self, *, secrets: Iterable[str | None] = (), keys: Iterable[str | None] = ()) -> None:
        pairs: dict[str, str] = {}
        for values, replace in ((secrets, lambda _: REDACTED), (keys, mask)):
            for value in values:
                if value:
                    for form in (value, quote(value, safe=""), quote_plus(value, safe="")):
                        pairs[form] = replace(value)
        # Longest first, so a secret that contains another is replaced whole.
        self._pairs = sorted(pairs.items(), key=lambda kv: len(kv[0]), reverse=True)

    def __call__(self, text: str) -> str:
        for secret, replacement in self._pairs:
            if secret in text:
                text = text.replace(secret, replacement)
        return text

    def __repr__(self) -> str:
        return f"Scrubber({len(self._pairs)} secrets)"


@dataclass(frozen=True)
class ErrorBody:
    """What an error answer said, already scrubbed."""

    code: str
    message: str
    help_link: str | None = None
    request_id: str | None = None


def reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "HTTP error"


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """A one-line, printable, bounded piece of ``text`` for an error message."""
    flat = re.sub(r"\s+", " ", "".join(ch if ch.isprintable() else " " for ch in text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _text(value: object) -> str | None:
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else str(value)


def parse_error_body(status: int, content: bytes, scrub: Scrubber, *, prefix: str = "PSB") -> ErrorBody:
    """Read an error answer's body; never fails, never returns an unscrubbed secret."""
    phrase = reason(status)
    try:
        body = json.loads(content.decode("utf-8")) if content.strip() else None
    except (UnicodeDecodeError, ValueError):
        shown = excerpt(scrub(content.decode("utf-8", errors="replace")))
        return ErrorBody(f"{prefix}{status}.JSON02", f"{phrase}; the body is not JSON: {shown!r}")
    if not isinstance(body, dict):
        what = "empty" if body is None else f"JSON but not an object: {excerpt(scrub(json.dumps(body)))!r}"
        return ErrorBody(code=f"{prefix}{status}.JSON02", message=f"{phrase}; the body is {what}")
    code = _text(body.get("code")) or _text(body.get("error")) or f"{prefix}{status}"
    message = next(
        (m for k in ("message", "detail", "error_description", "title") if (m := _text(body.get(k)))),
        phrase,
    )
    help_link = _text(body.get("helpLink"))
    request_id = _text(body.get("requestId"))
    return ErrorBody(
        code=scrub(code),
        message=scrub(excerpt(message, 1000)),
        help_link=scrub(help_link) if help_link else None,
        request_id=scrub(request_id) if request_id else None,
    )


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:  # RFC 9110 dates are GMT; obsolete forms may parse naive
            when = when.replace(tzinfo=now.tzinfo)
        seconds = (when - now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def error_class(status: int) -> type[PsbError]:
    """Which exception an HTTP status maps to (see the module docstring)."""
    if status in (408, 429) or status >= 500:
        return PsbTransientError
    if status in (401, 403):
        return PsbAuthError
    if status == 404:
        return PsbNotFound
    if status == 409:
        return PsbConflict
    return PsbPermanentError


def error_for_status(
    status: int,
    body: ErrorBody,
    *,
    retry_after: str | None,
    now: datetime,
    party_id: str | None,
    method: str,
    path: str,
    request_id: str | None = None,
) -> PsbError:
    """The exception (not raised) for a non-2xx answer."""
    cls = error_class(status)
    common: dict[str, object] = {
        "status": status,
        "code": body.code,
        "party_id": party_id,
        "request_id": body.request_id or request_id,
        "help_link": body.help_link,
        "method": method,
        "path": path,
    }
    if cls is PsbTransientError:
        return PsbTransientError(body.message, retry_after_s=parse_retry_after(retry_after, now), **common)
    return cls(body.message, **common)  # type: ignore[arg-type]

