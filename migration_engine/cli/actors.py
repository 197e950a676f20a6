"""Who an operator command acts as, for the audit trail: ``--actor`` or the OS user."""

from __future__ import annotations


def actor(value: str | None) -> str:
    """``value`` when given, else ``operator:<login name>`` (``operator:unknown`` without one)."""
    if value:
        return value
    import getpass

    try:
        return f"operator:{getpass.getuser()}"
    except Exception:  # pragma: no cover - no user database in some containers
        return "operator:unknown"
