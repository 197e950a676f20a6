"""Sending alert messages: webhooks (an HMAC-signed JSON POST) and e-mail (SMTP).

A webhook POST carries the message's stored JSON body as is, and:

    X-Peppol-Migrate-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>
    X-Peppol-Migrate-Delivery:  the message's uid (the same on every retry: a receiver drops repeats)
    X-Peppol-Migrate-Event:     the message's kind

keyed with ``alerts.webhook_secret``. Any 2xx is delivered; anything else (a refused
connection, a timeout, a 5xx, a 4xx) is tried again later. Posting uses the standard library
(urllib): the import contracts keep httpx to the PSB and SMP clients, and a webhook needs
neither connection pooling nor HTTP/2. A destination is named in the database and the output by
``webhook:`` and a hash of its URL, never the URL (a webhook URL often holds a token).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

from migration_engine import __version__
from migration_engine.settings import AlertsSettings

SIGNATURE_HEADER = "X-Peppol-Migrate-Signature"
DELIVERY_HEADER = "X-Peppol-Migrate-Delivery"
EVENT_HEADER = "X-Peppol-Migrate-Event"
EMAIL = "email"


def webhook_destination(url: str) -> str:
    """How a webhook is named in the outbox: its URL's hash, never the URL."""
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:16]


def webhook_label(url: str) -> str:
    """A webhook for people to read: scheme and host only (the path may hold a token)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes) -> bool:
    """Whether ``header`` is a valid signature of ``body`` (what a receiver checks)."""
    fields = dict(part.partition("=")[::2] for part in header.split(","))
    try:
        timestamp = int(fields.get("t", ""))
    except ValueError:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), header.strip())


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str = ""


class Senders:
    """The configured destinations (name -> how to send), from ``[alerts]``."""

    def __init__(self, settings: AlertsSettings) -> None:
        self.settings = settings
        self.webhooks: dict[str, str] = {webhook_destination(url): url for url in settings.webhooks}

    @property
    def destinations(self) -> list[str]:
        names = list(self.webhooks)
        if self.settings.smtp_host and self.settings.smtp_to:
            names.append(EMAIL)
        return names

    def label(self, destination: str) -> str:
        url = self.webhooks.get(destination)
        if url is not None:
            return webhook_label(url)
        if destination == EMAIL:
            return f"e-mail to {', '.join(self.settings.smtp_to)}" if self.settings.smtp_to else "e-mail"
        return f"{destination} (no longer configured)"

    def send(self, destination: str, *, uid: str, kind: str, payload: str, timestamp: int) -> SendResult:
        if destination == EMAIL:
            return self._email(uid=uid, payload=payload)
        url = self.webhooks.get(destination)
        if url is None:
            return SendResult(False, "not configured")
        return self._post(url, uid=uid, kind=kind, body=payload.encode(), timestamp=timestamp)

    def _post(self, url: str, *, uid: str, kind: str, body: bytes, timestamp: int) -> SendResult:
        headers = {
            "Content-Type": "application/json",
            "User-Agent": f"peppol-migrate/{__version__}",
            SIGNATURE_HEADER: sign(self.settings.webhook_secret, timestamp, body),
            DELIVERY_HEADER: uid,
            EVENT_HEADER: kind,
        }
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.settings.timeout_s) as response:
                status = response.status
        except urllib.error.HTTPError as exc:
            return SendResult(False, f"HTTP {exc.code}")
        except urllib.error.URLError as exc:
            return SendResult(False, f"cannot connect: {_reason(exc.reason)}")
        except (OSError, ValueError) as exc:  # a timeout while reading, a reset, a bad answer
            return SendResult(False, f"failed: {type(exc).__name__}: {_reason(exc)}")
        return SendResult(True) if 200 <= status < 300 else SendResult(False, f"HTTP {status}")

    def _email(self, *, uid: str, payload: str) -> SendResult:
        s = self.settings
        body: Mapping[str, Any] = json.loads(payload)
        message = EmailMessage()
        message["Subject"] = f"[peppol-migrate] {body.get('title', body.get('kind', 'alert'))}"
        message["From"] = s.smtp_from
        message["To"] = ", ".join(s.smtp_to)
        message["Message-ID"] = f"<{uid}@peppol-migrate>"  # the same on every retry
        message.set_content(str(body.get("text", "")))
        try:
            with smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.timeout_s) as smtp:
                if s.smtp_starttls:
                    smtp.starttls(context=ssl.create_default_context())
                if s.smtp_username:
                    smtp.login(s.smtp_username, s.smtp_password)
                smtp.send_message(message)
        except smtplib.SMTPResponseException as exc:
            return SendResult(False, f"SMTP {exc.smtp_code}")
        except (smtplib.SMTPException, OSError) as exc:
            return SendResult(False, f"SMTP failed: {type(exc).__name__}: {_reason(exc)}")
        return SendResult(True)


def _reason(reason: object) -> str:
    """An error's reason without a URL (which may hold a token) and within reason's length."""
    text = str(reason)
    for scheme in ("https://", "http://"):
        if scheme in text:
            text = text.split(scheme, 1)[0] + "<url>"
    return text[:200]
