"""The settings' shape: the sections as frozen dataclasses with their defaults (the single source),
the secrets, what ``psb.environment`` presets, and where a value came from (``Source``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

ENV_PREFIX = "PEPPOL_MIGRATE_"
CONFIG_ENV = ENV_PREFIX + "CONFIG"
CONFIG_FILE_NAME = "peppol-migrate.toml"
USER_CONFIG = Path("peppol-migrate", "config").with_suffix(".toml")
DEFAULTS_PACKAGE = "migration_engine.defaults"


@dataclass(frozen=True)
class DatabaseSettings:
    url: str = "sqlite:///peppol-migrate.db"


@dataclass(frozen=True)
class PsbSettings:
    environment: str = "acceptance"
    base_url: str = "https://accp-psb.econnect.eu"
    identity_url: str = "https://accp-identity.econnect.eu"
    client_id: str = ""
    username: str = ""
    client_secret: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    subscription_key: str = field(default="", repr=False)
    access_point_url: str = "https://accp-ap.econnect.eu/as4/v1"
    timeout_s: float = 30.0
    max_rps: float = 20.0
    verify_tls: bool = True


@dataclass(frozen=True)
class WorkerSettings:
    concurrency: int = 8
    poll_interval_s: float = 1.0
    lease_s: float = 60.0


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 8
    base_s: float = 2.0
    max_s: float = 600.0


@dataclass(frozen=True)
class TakeoverSettings:
    poll_s: float = 30.0
    poll_max_s: float = 900.0
    deadline_h: float = 72.0


@dataclass(frozen=True)
class KeysSettings:
    ttl_h: float = 168.0
    reissue_expired: bool = False
    encryption_key: str = field(default="", repr=False)
    new_encryption_key: str = field(default="", repr=False)  # `keys rotate`'s new key only


@dataclass(frozen=True)
class AuditSettings:
    # The audit trail's HMAC key: a secret, apart from keys.encryption_key.
    key: str = field(default="", repr=False)


@dataclass(frozen=True)
class HandoffSettings:
    mode: str = "outbox"
    outbox_dir: str = "outbox"
    endpoint: str = ""


@dataclass(frozen=True)
class OutboundSettings:
    cleanup: bool = True
    users: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProfilesSettings:
    dir: str = ""
    default: str = "default"


@dataclass(frozen=True)
class VerifySettings:
    peppol_network: bool = False
    sml_zone: str = "participant.sml.test.tech.peppol.org"
    dns_server: str = ""
    econnect_smp_host: str = ""
    cname_fallback: bool = False
    timeout_s: float = 5.0


@dataclass(frozen=True)
class NetworkSettings:
    # "host[:port][/path]=Provider name" entries: which provider an SMP URL belongs to.
    known_smps: tuple[str, ...] = ()
    # The Peppol Directory's base URL (by environment); empty = never ask the Directory.
    directory_url: str = "https://test-directory.peppol.eu"


@dataclass(frozen=True)
class LookupsSettings:
    dns_per_s: float = 50.0
    smp_per_s: float = 10.0
    directory_per_s: float = 2.0
    max_concurrency: int = 8
    attempts: int = 3
    backoff_s: float = 1.0
    cache_s: float = 3600.0


@dataclass(frozen=True)
class BudgetsSettings:
    # Calls a second shared by every worker process of the database (0 = off), through it
    # (store/budgets.py), on top of the per-process limits psb.max_rps and lookups.*_per_s.
    psb_per_s: float = 0.0
    smp_per_s: float = 0.0  # per SMP (by its base URL), like lookups.smp_per_s
    dns_per_s: float = 0.0
    directory_per_s: float = 0.0


@dataclass(frozen=True)
class ParitySettings:
    # Receive parity (docs/peppol-network.md, "Receive parity"); needs verify.peppol_network.
    snapshot: str = "required"  # required | best_effort | off
    inbound: str = "require"  # require | warn | off
    outbound: str = "warn"  # require | warn | off
    capability_map: str = ""  # a TOML file; empty = the shipped config/capability_map.toml


@dataclass(frozen=True)
class ReconcilerSettings:
    interval_s: float = 900.0
    recent_days: float = 14.0
    key_unused_h: float = 24.0
    realert_h: float = 24.0


@dataclass(frozen=True)
class PacingSettings:
    # Batch schedules' gate (docs/operations.md, "Pacing"): windows and wave caps gate a migration's
    # first mutating call; what follows a started takeover goes on outside windows unless held.
    hold_followups: bool = False
    recheck_s: float = 300.0  # a batch at its in-flight cap: its waiting migrations look again after this
    refresh_s: float = 60.0  # how often a worker re-reads the batch schedules (engine clock)


@dataclass(frozen=True)
class ConsoleSettings:
    # The operations console (`peppol-migrate serve`, docs/console.md).
    host: str = "127.0.0.1"  # loopback: put a TLS reverse proxy in front to reach it from elsewhere
    port: int = 8080
    users_file: str = ""  # a TOML file of users and API tokens with hashed secrets
    users: tuple[str, ...] = ()  # "name:role:scrypt$..." entries, on top of the file's
    tokens: tuple[str, ...] = ()  # API tokens, "name:role:scrypt$..." entries
    session_minutes: float = 60.0
    refresh_s: float = 10.0
    session_key: str = field(default="", repr=False)  # signs the session cookies; a secret


@dataclass(frozen=True)
class AlertsSettings:
    # Alerts (docs/operations.md, "Alerts"): webhooks signed with HMAC-SHA256, optional e-mail.
    interval_s: float = 30.0  # how often a worker service produces, digests and sends; 0 = off
    digest_s: float = 60.0  # alerts of one kind (and batch) within this long go out as one message
    digest_items: int = 20  # the parties a message lists by name; the rest are counted
    console_url: str = ""  # the console's base URL, for the links in a message (empty: paths only)
    webhooks: tuple[str, ...] = ()  # URLs each message is POSTed to
    webhook_secret: str = field(default="", repr=False)  # signs every POST; a secret
    timeout_s: float = 10.0
    retry_base_s: float = 30.0  # a failed delivery is tried again after this, doubling each time
    retry_max_s: float = 3600.0  # ... up to this; never given up (the outbox keeps it)
    smtp_host: str = ""  # empty: no e-mail
    smtp_port: int = 587
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = field(default="", repr=False)
    smtp_from: str = ""
    smtp_to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Settings:
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    psb: PsbSettings = field(default_factory=PsbSettings)
    worker: WorkerSettings = field(default_factory=WorkerSettings)
    retry: RetrySettings = field(default_factory=RetrySettings)
    takeover: TakeoverSettings = field(default_factory=TakeoverSettings)
    keys: KeysSettings = field(default_factory=KeysSettings)
    handoff: HandoffSettings = field(default_factory=HandoffSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    profiles: ProfilesSettings = field(default_factory=ProfilesSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    network: NetworkSettings = field(default_factory=NetworkSettings)
    lookups: LookupsSettings = field(default_factory=LookupsSettings)
    budgets: BudgetsSettings = field(default_factory=BudgetsSettings)
    parity: ParitySettings = field(default_factory=ParitySettings)
    audit: AuditSettings = field(default_factory=AuditSettings)
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)
    pacing: PacingSettings = field(default_factory=PacingSettings)
    alerts: AlertsSettings = field(default_factory=AlertsSettings)
    console: ConsoleSettings = field(default_factory=ConsoleSettings)


SECRET_KEYS: frozenset[tuple[str, str]] = frozenset(
    {
        ("psb", "client_secret"),
        ("psb", "password"),
        ("psb", "subscription_key"),
        ("keys", "encryption_key"),
        ("keys", "new_encryption_key"),
        ("audit", "key"),
        ("alerts", "webhook_secret"),
        ("alerts", "smtp_password"),
        ("console", "session_key"),
    }
)
HANDOFF_MODES = ("outbox", "https", "manual")
SNAPSHOT_MODES = ("required", "best_effort", "off")
PARITY_POLICIES = ("require", "warn", "off")

# What ``psb.environment`` sets. eConnect's public documentation gives the PSB and identity
# URLs of both; the acceptance AP URL is what acceptance's delivery options show. The
# production AP URL is not published, so production leaves it empty and the loader asks
# for it rather than guess: a wrong one would make every takeover look unfinished.
ENVIRONMENTS: dict[str, dict[tuple[str, str], str]] = {
    "acceptance": {
        ("psb", "base_url"): "https://accp-psb.econnect.eu",
        ("psb", "identity_url"): "https://accp-identity.econnect.eu",
        ("psb", "access_point_url"): "https://accp-ap.econnect.eu/as4/v1",
        ("verify", "sml_zone"): "participant.sml.test.tech.peppol.org",
        ("network", "directory_url"): "https://test-directory.peppol.eu",
    },
    "production": {
        ("psb", "base_url"): "https://psb.econnect.eu",
        ("psb", "identity_url"): "https://identity.econnect.eu",
        ("psb", "access_point_url"): "",
        ("verify", "sml_zone"): "participant.sml.prod.tech.peppol.org",
        ("network", "directory_url"): "https://directory.peppol.eu",
    },
}

# Settings that name a file or folder: relative values from a config file are made absolute
# against that file's folder. ``database.url`` is handled apart (only SQLite URLs hold a path).
PATH_SETTINGS: frozenset[tuple[str, str]] = frozenset(
    {("handoff", "outbox_dir"), ("profiles", "dir"), ("parity", "capability_map"), ("console", "users_file")}
)


# --- where a value came from ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where one setting's value came from, to name it in errors and in ``config show``."""

    kind: Literal["default", "environment-preset", "file", "variable", "override"]
    name: str = ""  # the file's path, the variable's name, or the environment's name

    def describe(self, setting: str) -> str:
        """A phrase for an error message, e.g. ``/etc/pm.toml, key worker.concurrency``."""
        if self.kind == "file":
            return f"{self.name}, key {setting}"
        if self.kind == "variable":
            return f"environment variable {self.name}"
        if self.kind == "environment-preset":
            return f"psb.environment = {self.name}"
        if self.kind == "override":
            return "an override of the loaded settings"
        return "the default"

    def __str__(self) -> str:
        if self.kind == "environment-preset":
            return f"psb.environment ({self.name})"
        return self.name or self.kind


DEFAULT_SOURCE = Source("default")


@dataclass(frozen=True)
class ConfigChoice:
    """The config file that counts, and which step of the discovery order found it."""

    path: Path
    found_by: str


@dataclass(frozen=True)
class LoadedSettings:
    """Settings with the source of each value (``"section.key"`` -> Source) and the file used."""

    settings: Settings
    sources: Mapping[str, Source]
    config: ConfigChoice | None
    searched: tuple[str, ...]
