"""Wiring: build the engine's parts once, from settings, at the edge (CLI, demo, tests)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from migration_engine.clock import Clock, SystemClock
from migration_engine.errors import ConfigError, PsbAuthError, PsbError
from migration_engine.settings import Settings

log = logging.getLogger("migration_engine.engine.runtime")

if TYPE_CHECKING:  # imported where built: `status` needs the store alone, not httpx or the steps
    from migration_engine.engine.alerts import Alerts
    from migration_engine.engine.reconciler import Reconciler
    from migration_engine.engine.worker import Worker
    from migration_engine.keys import KeyVault
    from migration_engine.limiter import SharedBudgets
    from migration_engine.peppol.snapshots import NetworkLookups
    from migration_engine.profiles import ProfileCatalog
    from migration_engine.psb.client import PsbClient
    from migration_engine.store import Store


def _is_postgres(url: str) -> bool:
    """Whether a database URL names PostgreSQL (a bad URL is reported where the store is built)."""
    return url.partition("://")[0].partition("+")[0].strip().lower() in ("postgres", "postgresql")


@dataclass
class Runtime:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _store: Store | None = None
    _psb: PsbClient | None = None
    _profiles: ProfileCatalog | None = None
    _vault: KeyVault | None = None
    _budgets: SharedBudgets | None = None
    _lookups: list[NetworkLookups] = field(default_factory=list)  # built here for a worker: closed here

    def __post_init__(self) -> None:
        # One clock for every worker: on PostgreSQL the system clock (not an injected one)
        # becomes the database's time, read through the store (store/db_clock.py). SQLite
        # is one host: its clock is the database's.
        if isinstance(self.clock, SystemClock) and _is_postgres(self.settings.database.url):
            from migration_engine.store.db_clock import DatabaseClock

            self.clock = DatabaseClock(self.clock, lambda: self.store.server_time())

    @property
    def store(self) -> Store:
        if self._store is None:
            from migration_engine.store import Store

            self._store = Store(self.settings.database.url, clock=self.clock, audit_key=self.settings.audit.key or None)
        return self._store

    def database_label(self) -> str:
        """The database URL without its password, for log lines and messages."""
        from migration_engine.store.database import normalise_url

        return normalise_url(self.settings.database.url).render_as_string(hide_password=True)

    def checked_store(self) -> Store:
        """The store, refusing an out-of-date schema with a clear message."""
        self.store.check_schema()
        return self.store

    @property
    def profiles(self) -> ProfileCatalog:
        if self._profiles is None:
            from migration_engine.profiles import ProfileCatalog

            self._profiles = ProfileCatalog.load(self.settings.profiles.dir)
        return self._profiles

    def vault(self) -> KeyVault:
        """The key vault, the one place the configured key-encryption key is checked: against the
        database's check value (store/vault.py), before anything is encrypted or decrypted.
        ``SecretError`` (exit 2, naming PEPPOL_MIGRATE_KEYS__ENCRYPTION_KEY) when it is missing,
        weak or not the key the stored migration keys were sealed with. Opened once per runtime."""
        if self._vault is None:
            self._vault = self.checked_store().open_vault(self.settings.keys.encryption_key)
        return self._vault

    def checked_vault(self, store: Store | None = None) -> KeyVault:
        """``vault()``: a worker started with the wrong key-encryption key would otherwise run
        every party with a key into needs_attention."""
        return self.vault()

    def budgets(self) -> SharedBudgets | None:
        """The budgets every worker of the database shares (``[budgets]``, through the store:
        store/budgets.py); None when all are 0. One per process, so its threads share each
        budget's reserved block."""
        b = self.settings.budgets
        rates = {"psb": b.psb_per_s, "smp": b.smp_per_s, "dns": b.dns_per_s, "directory": b.directory_per_s}
        if not any(rates.values()):
            return None
        if self._budgets is None:
            from migration_engine.limiter import SharedBudgets

            self._budgets = SharedBudgets(rates, clock=self.clock, reserve=self.store.reserve_budget)
        return self._budgets

    def network_lookups(self) -> NetworkLookups:
        """SML, SMP and Directory lookups from the settings, within the shared budgets; the
        caller closes them."""
        from migration_engine.peppol.snapshots import NetworkLookups

        return NetworkLookups.from_settings(self.settings, clock=self.clock, budgets=self.budgets())

    @property
    def psb(self) -> PsbClient:
        if self._psb is None:
            p = self.settings.psb
            if not p.client_id:
                raise ConfigError("psb.client_id is not set (PEPPOL_MIGRATE_PSB__CLIENT_ID or the config file)")
            from migration_engine.psb.client import PsbClient

            if not p.verify_tls:  # every command that talks to the PSB builds its client here
                log.warning(
                    "psb.verify_tls is false: the PSB's TLS certificate is not checked, so anyone on the path "
                    "can read the PSB credentials and the migration keys; set it back to true"
                )
            self._psb = PsbClient(
                base_url=p.base_url,
                identity_url=p.identity_url,
                client_id=p.client_id,
                client_secret=p.client_secret or None,
                username=p.username or None,
                password=p.password or None,
                subscription_key=p.subscription_key or None,
                timeout_s=p.timeout_s,
                max_rps=p.max_rps or None,
                verify_tls=p.verify_tls,
                clock=self.clock,
                max_connections=max(16, self.settings.worker.concurrency * 2),
                budget=budgets.limiter("psb") if (budgets := self.budgets()) is not None else None,
            )
        return self._psb

    def check_psb_credentials(self) -> None:
        """Refuse (``ConfigError``, exit 2) to run without PSB credentials, or with ones the
        identity server rejects: one token request up front, so a worker never starts only to
        trip its circuit breaker on every call. The token stays in the client's cache for the
        first steps. An identity server that cannot be reached is a ``PsbError`` (exit 1).
        """
        p = self.settings.psb
        env = "PEPPOL_MIGRATE_PSB__"
        if not p.client_id:
            raise ConfigError(f"psb.client_id is not set ({env}CLIENT_ID or the config file)")
        if p.username and not p.password:
            raise ConfigError(f"psb.username is set but psb.password is not: set {env}PASSWORD")
        if not p.username and not p.client_secret:
            raise ConfigError(
                f"no PSB credentials: set {env}CLIENT_SECRET (client credentials), or psb.username "
                f"({env}USERNAME) and {env}PASSWORD (password grant)"
            )
        secret = f"{env}PASSWORD" if p.username else f"{env}CLIENT_SECRET"
        who = f"psb.username {p.username!r} with psb.client_id" if p.username else "psb.client_id"
        try:
            self.psb.ensure_token()
        except PsbAuthError as exc:
            raise ConfigError(
                f"the identity server {p.identity_url} rejected the credentials of {who} {p.client_id!r} "
                f"({exc}): check {secret}"
            ) from None
        except PsbError as exc:
            raise PsbError(f"cannot get a PSB token from {p.identity_url} (psb.identity_url): {exc}") from None

    def worker(self, **kwargs: object) -> Worker:
        """The worker; ``SecretError`` before any claim when the key-encryption key is missing or wrong."""
        from migration_engine.engine.worker import Worker

        store = self.checked_store()
        store.require_audit_key()  # every move appends audit events: refuse before the first claim
        if "reconciler" not in kwargs and self.settings.reconciler.interval_s > 0:
            kwargs["reconciler"] = self.reconciler()  # the worker closes it
        if "alerts" not in kwargs and self.settings.alerts.interval_s > 0:
            kwargs["alerts"] = self.alerts()
        if "snapshots" not in kwargs and self.budgets() is not None:
            from migration_engine.engine.baseline import active as snapshots_active

            if snapshots_active(self.settings):  # the worker's snapshots, within the shared budgets
                lookups = self.network_lookups()
                self._lookups.append(lookups)
                kwargs["snapshots"] = lookups
        return Worker(
            store=store,
            psb=self.psb,
            settings=self.settings,
            profiles=self.profiles,
            vault=self.checked_vault(store),
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )

    def reconciler(self, **kwargs: object) -> Reconciler:
        """A reconciler (engine/reconciler.py) on this runtime's store, PSB client and clock; it
        asks the network only when ``verify.econnect_smp_host`` says which SMP is eConnect's.
        The caller closes it (a worker closes its own)."""
        from migration_engine.engine.reconciler import Reconciler

        network = None
        if self.settings.verify.econnect_smp_host.strip():
            network = self.network_lookups()
        return Reconciler(
            store=self.checked_store(),
            psb=self.psb,
            network=network,
            settings=self.settings,
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )

    def alerts(self, **kwargs: object) -> Alerts:
        """The alert pipeline (engine/alerts.py) on this runtime's store and clock."""
        from migration_engine.engine.alerts import Alerts

        return Alerts(store=self.checked_store(), settings=self.settings, clock=self.clock, **kwargs)  # type: ignore[arg-type]

    def close(self) -> None:
        for lookups in self._lookups:
            lookups.close()
        if self._psb is not None:
            self._psb.close()
        if self._store is not None:
            self._store.close()
