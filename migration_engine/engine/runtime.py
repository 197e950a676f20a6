"""Wiring: build the engine's parts once, from settings, at the edge (CLI, demo, tests)."""

from __future__ import annotations

from dataclasses import dataclass, field

from migration_engine.clock import Clock, SystemClock
from migration_engine.engine.worker import Worker
from migration_engine.errors import ConfigError
from migration_engine.keys import KeyVault
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb.client import PsbClient
from migration_engine.settings import Settings
from migration_engine.store import Store


@dataclass
class Runtime:
    settings: Settings
    clock: Clock = field(default_factory=SystemClock)
    _store: Store | None = None
    _psb: PsbClient | None = None
    _profiles: ProfileCatalog | None = None

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = Store(self.settings.database.url, clock=self.clock)
        return self._store

    def checked_store(self) -> Store:
        """The store, refusing an out-of-date schema with a clear message."""
        self.store.check_schema()
        return self.store

    @property
    def profiles(self) -> ProfileCatalog:
        if self._profiles is None:
            self._profiles = ProfileCatalog.load(self.settings.profiles.dir)
        return self._profiles

    def vault(self) -> KeyVault:
        """The key vault; ``SecretError`` when the key-encryption key is missing or too short."""
        return KeyVault(self.settings.keys.encryption_key)

    def checked_vault(self, store: Store) -> KeyVault:
        """The key vault, refusing (``SecretError``, exit 2) a missing or short key-encryption key
        and one that does not decrypt a key already stored: a worker started with the wrong
        environment would otherwise run every party with a key into needs_attention."""
        vault = self.vault()
        stored = store.a_stored_key()
        if stored is not None:
            vault.decrypt(stored)  # SecretError says which setting is wrong
        return vault

    @property
    def psb(self) -> PsbClient:
        if self._psb is None:
            p = self.settings.psb
            if not p.client_id:
                raise ConfigError("psb.client_id is not set (PEPPOL_MIGRATE_PSB__CLIENT_ID or the config file)")
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
            )
        return self._psb

    def worker(self, **kwargs: object) -> Worker:
        """The worker; ``SecretError`` before any claim when the key-encryption key is missing or wrong."""
        store = self.checked_store()
        return Worker(
            store=store,
            psb=self.psb,
            settings=self.settings,
            profiles=self.profiles,
            vault=self.checked_vault(store),
            clock=self.clock,
            **kwargs,  # type: ignore[arg-type]
        )

    def close(self) -> None:
        if self._psb is not None:
            self._psb.close()
        if self._store is not None:
            self._store.close()
