"""Ranges, shapes and combinations of settings; each error names the setting, its source and what is allowed."""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
import typing
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from migration_engine.errors import ConfigError
from migration_engine.settings.model import (
    DEFAULT_SOURCE,
    ENVIRONMENTS,
    HANDOFF_MODES,
    PARITY_POLICIES,
    SNAPSHOT_MODES,
    Settings,
    Source,
)
from migration_engine.settings.showing import bad_value

# --- checks -----------------------------------------------------------------------------------


def _is_http_url(value: str) -> bool:
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def is_loopback_host(host: str | None) -> bool:
    """``localhost``, 127.0.0.0/8 or ``::1``: traffic that never leaves this machine."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _known_smp_ok(entry: str) -> bool:
    """``host[:port][/path]=Provider name``: both sides non-empty, the left without spaces."""
    where, sep, name = entry.partition("=")
    return bool(sep) and bool(where.strip()) and not any(c.isspace() for c in where.strip()) and bool(name.strip())


def _clear_text_to_elsewhere(value: str) -> bool:
    """An ``http://`` URL to a host other than this machine."""
    try:
        parts = urlsplit(value)
        return parts.scheme == "http" and not is_loopback_host(parts.hostname)
    except ValueError:
        return False  # a malformed URL is the shape rule's to report


# The PSB client sends the client secret, the bearer token and the parties' migration keys:
# over http:// anyone on the path reads them. Only the sandbox (or a test double) on this
# machine may be spoken to in clear.
_TLS_URLS = ("base_url", "identity_url")
_NEEDS_TLS = (
    "must be an https:// URL: over http:// the PSB credentials and the migration keys travel in clear "
    "(http:// is allowed only to a loopback host: localhost, 127.0.0.0/8, ::1)"
)

_AT_LEAST_ONE = "must be a whole number of at least 1"
_POSITIVE = "must be a number greater than 0"
_HTTP_URL = "must be an http:// or https:// URL with a host"

# (section, key) -> (is the value allowed, what is allowed). Types are checked when read;
# these are the ranges and shapes. Every setting not listed takes any value of its type.
_RULES: dict[tuple[str, str], tuple[typing.Callable[[Any], bool], str]] = {
    ("database", "url"): (
        lambda v: bool(re.match(r"[A-Za-z][A-Za-z0-9+.\-]*://", v)),
        "must be a SQLAlchemy URL, e.g. sqlite:///peppol-migrate.db or postgresql+psycopg://user@host/db",
    ),
    ("psb", "environment"): (lambda v: v in ENVIRONMENTS, f"must be one of {', '.join(ENVIRONMENTS)}"),
    ("psb", "base_url"): (_is_http_url, _HTTP_URL),
    ("psb", "identity_url"): (_is_http_url, _HTTP_URL),
    ("psb", "access_point_url"): (_is_http_url, _HTTP_URL),
    ("psb", "timeout_s"): (lambda v: v > 0, _POSITIVE),
    ("psb", "max_rps"): (lambda v: v >= 0, "must be 0 (no limit) or a positive number"),
    ("worker", "concurrency"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("worker", "poll_interval_s"): (lambda v: v > 0, _POSITIVE),
    ("worker", "lease_s"): (lambda v: v > 0, _POSITIVE),
    ("retry", "max_attempts"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("retry", "base_s"): (lambda v: v > 0, _POSITIVE),
    ("retry", "max_s"): (lambda v: v > 0, _POSITIVE),
    ("takeover", "poll_s"): (lambda v: v > 0, _POSITIVE),
    ("takeover", "poll_max_s"): (lambda v: v > 0, _POSITIVE),
    ("takeover", "deadline_h"): (lambda v: v > 0, _POSITIVE),
    ("keys", "ttl_h"): (lambda v: v > 0, _POSITIVE),
    ("handoff", "mode"): (lambda v: v in HANDOFF_MODES, f"must be one of {', '.join(HANDOFF_MODES)}"),
    ("handoff", "outbox_dir"): (lambda v: bool(v.strip()), "must name a folder"),
    ("handoff", "endpoint"): (lambda v: not v or _is_http_url(v), _HTTP_URL + " (or empty)"),
    ("outbound", "users"): (lambda v: all(u.strip() for u in v), "must be a list of non-empty user names"),
    ("profiles", "default"): (
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9_-]+", v)),
        "must be a profile name (letters, digits, - and _)",
    ),
    ("verify", "sml_zone"): (
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+\.?", v.strip())),
        "must be a DNS name, e.g. participant.sml.prod.tech.peppol.org",
    ),
    ("verify", "timeout_s"): (lambda v: v > 0, _POSITIVE),
    ("network", "known_smps"): (
        lambda v: all(_known_smp_ok(e) for e in v),
        "must be a list of host[:port][/path]=Provider name entries, e.g. smp.example.com=Example BV",
    ),
    ("network", "directory_url"): (lambda v: not v or _is_http_url(v), _HTTP_URL + " (or empty: no Directory)"),
    ("lookups", "dns_per_s"): (lambda v: v >= 0, "must be 0 (no limit) or a positive number"),
    ("lookups", "smp_per_s"): (lambda v: v >= 0, "must be 0 (no limit) or a positive number"),
    ("lookups", "directory_per_s"): (lambda v: v >= 0, "must be 0 (no limit) or a positive number"),
    ("lookups", "max_concurrency"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("lookups", "attempts"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("lookups", "backoff_s"): (lambda v: v >= 0, "must be a number of at least 0"),
    ("lookups", "cache_s"): (lambda v: v >= 0, "must be a number of at least 0 (0 = no cache)"),
    ("budgets", "psb_per_s"): (lambda v: v >= 0, "must be 0 (off) or a positive number"),
    ("budgets", "smp_per_s"): (lambda v: v >= 0, "must be 0 (off) or a positive number"),
    ("budgets", "dns_per_s"): (lambda v: v >= 0, "must be 0 (off) or a positive number"),
    ("budgets", "directory_per_s"): (lambda v: v >= 0, "must be 0 (off) or a positive number"),
    ("parity", "snapshot"): (lambda v: v in SNAPSHOT_MODES, f"must be one of {', '.join(SNAPSHOT_MODES)}"),
    ("parity", "inbound"): (lambda v: v in PARITY_POLICIES, f"must be one of {', '.join(PARITY_POLICIES)}"),
    ("parity", "outbound"): (lambda v: v in PARITY_POLICIES, f"must be one of {', '.join(PARITY_POLICIES)}"),
    ("reconciler", "interval_s"): (lambda v: v >= 0, "must be 0 (off) or a positive number of seconds"),
    ("reconciler", "recent_days"): (lambda v: v >= 0, "must be 0 or a positive number of days"),
    ("reconciler", "key_unused_h"): (lambda v: v > 0, _POSITIVE),
    ("pacing", "recheck_s"): (lambda v: v > 0, _POSITIVE),
    ("pacing", "refresh_s"): (lambda v: v > 0, _POSITIVE),
    ("reconciler", "realert_h"): (lambda v: v >= 0, "must be 0 (never again) or a positive number of hours"),
    ("audit", "key"): (lambda v: not v or len(v) >= 16, "must be at least 16 characters (or unset)"),
    ("alerts", "interval_s"): (lambda v: v >= 0, "must be 0 (off) or a positive number of seconds"),
    ("alerts", "digest_s"): (lambda v: v >= 0, "must be 0 (no digests) or a positive number of seconds"),
    ("alerts", "digest_items"): (lambda v: v >= 1, _AT_LEAST_ONE),
    ("alerts", "console_url"): (lambda v: not v or _is_http_url(v), _HTTP_URL + " (or empty)"),
    ("alerts", "webhooks"): (
        lambda v: all(_is_http_url(u) and not _clear_text_to_elsewhere(u) for u in v),
        "must be https:// URLs with a host (http:// only to a loopback host: localhost, 127.0.0.0/8, ::1)",
    ),
    ("alerts", "webhook_secret"): (lambda v: not v or len(v) >= 16, "must be at least 16 characters (or unset)"),
    ("alerts", "timeout_s"): (lambda v: v > 0, _POSITIVE),
    ("alerts", "retry_base_s"): (lambda v: v > 0, _POSITIVE),
    ("alerts", "retry_max_s"): (lambda v: v > 0, _POSITIVE),
    ("alerts", "smtp_port"): (lambda v: 1 <= v <= 65535, "must be a port number from 1 to 65535"),
    ("console", "host"): (
        lambda v: bool(v.strip()) and not any(c.isspace() for c in v),
        "must be a host name or address",
    ),
    ("console", "port"): (lambda v: 1 <= v <= 65535, "must be a port number from 1 to 65535"),
    ("console", "session_minutes"): (lambda v: v > 0, _POSITIVE),
    ("console", "refresh_s"): (lambda v: v > 0, _POSITIVE),
    ("console", "session_key"): (lambda v: not v or len(v) >= 32, "must be at least 32 characters (or unset)"),
}


def _number_ok(value: Any) -> bool:
    return not isinstance(value, float) or math.isfinite(value)


def check(settings: Settings, sources: Mapping[str, Source] | None = None) -> None:
    """Ranges, shapes and combinations; each error names the setting, its source and what is allowed."""

    def source(setting: str) -> Source:
        return (sources or {}).get(setting, Source("override") if sources is None else DEFAULT_SOURCE)

    psb = settings.psb
    if psb.environment == "production" and not psb.access_point_url:
        raise ConfigError(
            "psb.access_point_url is not set (psb.environment = production, from "
            f"{source('psb.environment').describe('psb.environment')}): eConnect's production access point URL "
            "is not built in; set psb.access_point_url to the URL eConnect's production delivery options show"
        )
    for section_field in dataclasses.fields(settings):
        section = section_field.name
        body = getattr(settings, section)
        for f in dataclasses.fields(body):
            value = getattr(body, f.name)
            setting = f"{section}.{f.name}"
            if not _number_ok(value):
                finite = "expected a finite number (not NaN or infinity)"
                raise bad_value(section, f.name, value, source(setting), finite)
            rule = _RULES.get((section, f.name))
            if rule is not None and not rule[0](value):
                raise bad_value(section, f.name, value, source(setting), rule[1])
    for key in _TLS_URLS:
        if _clear_text_to_elsewhere(getattr(psb, key)):
            raise bad_value("psb", key, getattr(psb, key), source(f"psb.{key}"), _NEEDS_TLS)
    if settings.handoff.mode == "https" and not settings.handoff.endpoint:
        raise ConfigError(
            f"handoff.mode is https (from {source('handoff.mode').describe('handoff.mode')}) "
            "but handoff.endpoint is empty: set it to the new provider's URL"
        )
    if settings.audit.key and settings.audit.key == settings.keys.encryption_key:
        raise ConfigError(
            "audit.key is the same secret as keys.encryption_key: give the audit trail a key of its own "
            "(PEPPOL_MIGRATE_AUDIT__KEY), so that neither key gives away the other's use"
        )
    if settings.alerts.webhooks and not settings.alerts.webhook_secret:
        raise ConfigError(
            "alerts.webhooks is set but alerts.webhook_secret is not: set PEPPOL_MIGRATE_ALERTS__WEBHOOK_SECRET "
            "(at least 16 characters), the key every webhook POST is signed with"
        )
    if settings.alerts.smtp_host and not (settings.alerts.smtp_from and settings.alerts.smtp_to):
        raise ConfigError("alerts.smtp_host is set: set alerts.smtp_from and alerts.smtp_to as well")
    if settings.verify.peppol_network and not settings.verify.econnect_smp_host.strip():
        raise ConfigError(
            "verify.peppol_network is on (from "
            f"{source('verify.peppol_network').describe('verify.peppol_network')}): "
            "set verify.econnect_smp_host to eConnect's SMP host"
        )


def with_overrides(settings: Settings, **sections: Mapping[str, Any]) -> Settings:
    """A copy with some values replaced, e.g. ``with_overrides(s, worker={"concurrency": 4})``.

    Values are taken as given (``psb.environment`` fills nothing in here); they are checked.
    """
    changed = {name: dataclasses.replace(getattr(settings, name), **dict(body)) for name, body in sections.items()}
    result = dataclasses.replace(settings, **changed)
    check(result)
    return result
