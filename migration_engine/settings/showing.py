"""How a setting may be shown: never a secret, never a URL's password; in errors and ``config show``."""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from migration_engine.errors import ConfigError
from migration_engine.settings.model import SECRET_KEYS, Settings, Source

_USERINFO = re.compile(r"^([^:@/\s]*):[^@\s]*@")


def shown_in_error(section: str, key: str, value: Any) -> str:
    """A value as an error may print it: never a secret, never a URL's password."""
    if (section, key) in SECRET_KEYS:
        return "(a secret value)"
    if isinstance(value, str) and "://" in value:
        return repr(mask_url(value))
    if isinstance(value, str) and "@" in value:  # a URL without its scheme may still carry user:password@
        return repr(_USERINFO.sub(r"\1:***@", value))
    return repr(value)


def bad_value(section: str, key: str, value: Any, source: Source, allowed: str) -> ConfigError:
    setting = f"{section}.{key}"
    shown = shown_in_error(section, key, value)
    return ConfigError(f"{setting} = {shown} (from {source.describe(setting)}): {allowed}")




# --- showing ----------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """A URL with its password (``user:password@``) replaced by ``***``; other text unchanged."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def shown_value(section: str, key: str, value: Any) -> Any:
    """A value as ``config show`` prints it: secrets as set/not set, URLs without passwords.

    The handoff endpoint's query is hidden too: a receiving provider may put a token there.
    """
    if (section, key) in SECRET_KEYS:
        return "(set)" if value else "(not set)"
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str) and "://" in value:
        masked = mask_url(value)
        if (section, key) == ("handoff", "endpoint") and "?" in masked:
            masked = masked.partition("?")[0] + "?***"
        return masked
    return value


def as_dict(settings: Settings, *, mask_secrets: bool = True) -> dict[str, dict[str, Any]]:
    """Every setting by section; secrets shown only as set or not set."""
    out: dict[str, dict[str, Any]] = {}
    for section in dataclasses.fields(settings):
        body = dataclasses.asdict(getattr(settings, section.name))
        for key in list(body):
            if mask_secrets and (section.name, key) in SECRET_KEYS:
                body[key] = "(set)" if body[key] else "(not set)"
            elif isinstance(body[key], tuple):
                body[key] = list(body[key])
        out[section.name] = body
    return out
