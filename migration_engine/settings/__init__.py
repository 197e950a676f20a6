"""Typed settings: defaults here, a TOML file over them, ``PEPPOL_MIGRATE_*`` over that.

The defaults live in these dataclasses, the single source; ``config/default.toml`` (shipped
in the package as ``migration_engine.defaults``) lists every one of them with its meaning,
and a test keeps the two equal. Settings are built once at the edge (the CLI) and passed in:
nothing reads them at import time.

Layers, later wins:
1. the defaults below, with ``psb.environment`` filling in the URLs and the SML zone of
   eConnect's acceptance or production environment (a value set explicitly wins over it);
2. one TOML file (same sections and keys), the first of: ``--config FILE``,
   ``PEPPOL_MIGRATE_CONFIG``, ``./peppol-migrate.toml``,
   ``${XDG_CONFIG_HOME}/peppol-migrate/config.toml`` (``~/.config/...`` by default);
3. ``PEPPOL_MIGRATE_<SECTION>__<KEY>`` for one value, e.g. ``PEPPOL_MIGRATE_PSB__BASE_URL``.

Relative paths in a file resolve against that file's folder, so a file means the same from
any working directory; relative paths from the environment or the defaults resolve against
the working directory, as a shell user expects.

Secrets (``SECRET_KEYS``) come only from the environment, or from a file named by
``PEPPOL_MIGRATE_<SECTION>__<KEY>_FILE``; a config file that holds one is refused.

The package by concern: ``model`` (the sections and their defaults, the secrets, the
environments' presets, a value's ``Source``), ``discovery`` (which file counts; the packaged
defaults), ``loading`` (building the settings and where each value came from), ``checks``
(ranges and shapes), ``showing`` (masking for errors and ``config show``).
"""

from migration_engine.settings.checks import check, with_overrides
from migration_engine.settings.discovery import (
    config_candidates,
    discover_config,
    packaged_defaults_text,
    starter_config_text,
)
from migration_engine.settings.loading import (
    env_names,
    load_settings,
    resolve_settings,
    sqlite_url_against,
)
from migration_engine.settings.model import (
    CONFIG_ENV,
    CONFIG_FILE_NAME,
    DEFAULT_SOURCE,
    DEFAULTS_PACKAGE,
    ENV_PREFIX,
    ENVIRONMENTS,
    HANDOFF_MODES,
    PATH_SETTINGS,
    SECRET_KEYS,
    USER_CONFIG,
    AlertsSettings,
    AuditSettings,
    BudgetsSettings,
    ConfigChoice,
    ConsoleSettings,
    DatabaseSettings,
    HandoffSettings,
    KeysSettings,
    LoadedSettings,
    LookupsSettings,
    NetworkSettings,
    OutboundSettings,
    PacingSettings,
    ParitySettings,
    ProfilesSettings,
    PsbSettings,
    ReconcilerSettings,
    RetrySettings,
    Settings,
    Source,
    TakeoverSettings,
    VerifySettings,
    WorkerSettings,
)
from migration_engine.settings.showing import as_dict, mask_url, shown_value

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILE_NAME",
    "DEFAULTS_PACKAGE",
    "DEFAULT_SOURCE",
    "ENVIRONMENTS",
    "ENV_PREFIX",
    "HANDOFF_MODES",
    "PATH_SETTINGS",
    "SECRET_KEYS",
    "USER_CONFIG",
    "AlertsSettings",
    "AuditSettings",
    "BudgetsSettings",
    "ConfigChoice",
    "ConsoleSettings",
    "DatabaseSettings",
    "HandoffSettings",
    "KeysSettings",
    "LoadedSettings",
    "LookupsSettings",
    "NetworkSettings",
    "OutboundSettings",
    "PacingSettings",
    "ParitySettings",
    "ProfilesSettings",
    "PsbSettings",
    "ReconcilerSettings",
    "RetrySettings",
    "Settings",
    "Source",
    "TakeoverSettings",
    "VerifySettings",
    "WorkerSettings",
    "as_dict",
    "check",
    "config_candidates",
    "discover_config",
    "env_names",
    "load_settings",
    "mask_url",
    "packaged_defaults_text",
    "resolve_settings",
    "shown_value",
    "sqlite_url_against",
    "starter_config_text",
    "with_overrides",
]
