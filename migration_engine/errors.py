"""The one exception tree of peppol-migrate.

Foreign errors (httpx, SQLAlchemy, cryptography) are translated at the module that owns
the foreign library, with ``raise ... from``. Every message is safe to print: no
migration key, token or secret ever appears in one unmasked.

    PeppolMigrateError                 base; ``exit_code`` is what the CLI exits with
    ├── InputError                     bad input from a user (file row, argument): exit 2
    │   └── ImportRejected             an import file had bad rows; carries the row report
    ├── ConfigError                    a setting is missing or malformed: exit 2
    ├── SecretError                    key-encryption key missing or wrong: exit 2
    │   └── StoredKeyUnreadable        one migration's stored key does not open (moved
    │                                  from another row, altered, another key): that row only
    ├── StoreError                     the database refused or is unusable: exit 1
    │   ├── SchemaOutOfDate            ``db upgrade`` has not been run: exit 2
    │   └── ActiveMigrationExists      a party already has an open migration: exit 2
    ├── TransitionError                a trigger is not allowed from the current state: exit 2
    ├── LeaseLost                      a step's lease ran out: a call not to repeat is not made
    ├── PsbError                       the PSB (or the network to it) failed a call: exit 1
    │   ├── PsbTransientError          worth retrying later: timeouts, connection errors,
    │   │                              5xx, 408, 429 (``retry_after_s`` from Retry-After)
    │   └── PsbPermanentError          4xx other than 408/429: the same call fails again
    │       ├── PsbAuthError           401 after a token refresh, 403, or a token request refused
    │       ├── PsbNotFound            404
    │       └── PsbConflict            409
    └── NetworkLookupError             the Peppol network (SML DNS, an SMP) gave no usable answer:
                                       transient, the worker retries it as it does PsbTransientError
"""

from __future__ import annotations


class PeppolMigrateError(Exception):
    """Base of every error peppol-migrate raises on purpose."""

    exit_code = 1


class InputError(PeppolMigrateError):
    """Bad input from the user; says what and where."""

    exit_code = 2


class ImportRejected(InputError):
    """An import file had at least one bad row; nothing was written."""

    def __init__(self, message: str, *, problems: list[dict[str, object]]) -> None:
        super().__init__(message)
        self.problems = problems


class ConfigError(PeppolMigrateError):
    """A setting is missing or malformed."""

    exit_code = 2


class SecretError(PeppolMigrateError):
    """The key-encryption key is missing, malformed, or does not decrypt the stored keys."""

    exit_code = 2


class StoredKeyUnreadable(SecretError):
    """One migration's stored key does not open with the (checked) key-encryption key: it was
    sealed for another migration, altered, or sealed by another key. The worker fails just
    that migration (needs_attention); ``keys export`` skips just that row."""

    def __init__(self, message: str, *, migration_id: int, party_id: str) -> None:
        super().__init__(message)
        self.migration_id = migration_id
        self.party_id = party_id


class StoreError(PeppolMigrateError):
    """The database refused an operation or cannot be used."""


class SchemaOutOfDate(StoreError):
    """The database schema is older than this version of peppol-migrate."""

    exit_code = 2


class ActiveMigrationExists(StoreError):
    """A party already has a migration that is neither completed nor cancelled."""

    exit_code = 2


class TransitionError(PeppolMigrateError):
    """A trigger is not allowed from the migration's current state."""

    exit_code = 2


class LeaseLost(PeppolMigrateError):
    """The worker no longer holds the migration's lease (another worker re-claimed it), so a
    step stops before a call that must not be made twice; its result is discarded anyway."""


class PsbError(PeppolMigrateError):
    """A PSB call failed. Carries what an operator needs to act on it."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        party_id: str | None = None,
        request_id: str | None = None,
        help_link: str | None = None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.party_id = party_id
        self.request_id = request_id
        self.help_link = help_link
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        status = f"HTTP {self.status} " if self.status is not None else ""
        code = f"[{self.code}] " if self.code else ""
        party = f" for party {self.party_id}" if self.party_id else ""
        return f"{status}{code}{self.message}{party}{where}"


class PsbTransientError(PsbError):
    """Worth retrying later; ``retry_after_s`` is the server's Retry-After when it sent one."""

    def __init__(self, message: str, *, retry_after_s: float | None = None, **kwargs: object) -> None:
        super().__init__(message, **kwargs)  # type: ignore[arg-type]
        self.retry_after_s = retry_after_s


class PsbPermanentError(PsbError):
    """The same call would fail again: the input or the remote state must change first."""


class PsbAuthError(PsbPermanentError):
    """Authentication or authorisation failed even after a fresh token."""


class PsbNotFound(PsbPermanentError):
    """The PSB does not know the resource (HTTP 404)."""


class PsbConflict(PsbPermanentError):
    """The PSB says the request conflicts with the current state (HTTP 409)."""


class NetworkLookupError(PeppolMigrateError):
    """A DNS query to the SML zone or an HTTP call to an SMP failed or gave an unusable answer.

    Transient: the worker reschedules with backoff, as for ``PsbTransientError``, and gives up
    after ``retry.max_attempts``. ``code`` is ``DNS`` or ``SMP``; ``status`` an SMP's HTTP status.
    """

    retry_after_s: float | None = None

    def __init__(self, message: str, *, code: str, status: int | None = None, party_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.party_id = party_id

    def __str__(self) -> str:
        party = f" for party {self.party_id}" if self.party_id else ""
        return f"[{self.code}] {self.message}{party}"


def is_systemic(exc: PsbError) -> bool:
    """Whether a failure is about our credentials rather than one party: the circuit breaker's business.

    A 401 that survived a token refresh, or the identity server refusing to issue a token
    (codes OAUTH01/OAUTH02, whatever its HTTP status).
    """
    return isinstance(exc, PsbAuthError) and (exc.status == 401 or (exc.code or "").startswith("OAUTH"))
