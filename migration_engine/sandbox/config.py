"""Every per-run knob of the sandbox, in one frozen dataclass."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from migration_engine.sandbox.publications import Publication

ECONNECT = "econnect"
"""The SMP id of eConnect in the sandbox's SML."""

RepeatPrepare = Literal["overwrite", "same"]
DeliveryView = Literal["dns", "owner"]
KEY_REJECT_STATUSES: tuple[int, ...] = (400, 403, 404, 422)


@dataclass(frozen=True)
class ProviderConfig:
    """Another Peppol service provider: its SMP id (``name``) and its access point URL."""

    name: str
    ap_url: str


@dataclass(frozen=True)
class SandboxConfig:
    """One run of the sandbox. Times are seconds on the model's ``Clock``.

    Identity server
        client_id, client_secret: the OAuth2 client (``sandbox-client`` / ``sandbox-secret``).
        username, password: the user for the password grant (``sandbox-user`` / ``sandbox-password``).
        token_ttl_s: lifetime of an access token (3600, like the real identity server); also
            changeable at runtime through ``POST /sandbox/faults`` (``tokenTtlS``).
        subscription_key: when set, every ``/api/`` call must send this ``Subscription-Key``
            header (401 otherwise); None (default) = not checked, as the newer docs say.

    eConnect
        access_point_url: eConnect's AP URL in delivery options (``https://accp-ap.econnect.eu/as4/v1``,
            the engine's default ``psb.access_point_url``).
        access_point_certificate: the opaque ``certificate`` string of eConnect's delivery options.
        environment_capabilities: the environment-level capability defaults that ``inherited``
            resolves to; a party taken over or created gets every capability ``inherited``.

    SML
        key_ttl_s: how long a migration key stays valid after PrepareToMigrate (7 days;
            the real SML states no period).
        propagation_delay_s: how long after a registration change the DNS (and so the
            delivery options) still point at the previous SMP (0 = at once).
        repeat_prepare: what a repeated PrepareToMigrate does: ``"overwrite"`` stores the new
            key (BDMSL), ``"same"`` returns the stored key while it is still valid.
        sml_zone: the zone the sandbox's DNS server answers NAPTR and CNAME queries for
            (``participant.sml.test.tech.peppol.org``, the Peppol test SML's zone).

    PSB details the documentation leaves open (the engine must cope with any of them)
        key_reject_status: HTTP status of a migration-in PUT with a wrong, unknown, expired or
            already used key (400; try 403, 404 or 422).
        delivery_view: what deliveryOption answers from: ``"dns"`` (default) the SMP the DNS
            shows, as a sender's lookup does; ``"owner"`` the SML's owner at once, as a PSB
            that reads its own registration would, ahead of DNS propagation.
        vary_seed: when set, ``key_reject_status`` is drawn from (400, 403, 404, 422) and
            ``repeat_prepare`` from ("overwrite", "same") with ``random.Random(vary_seed)``,
            overriding the two fields above, so runs differ. None (default) = use the fields.

    Other providers
        providers: the other providers (default: ``provider-b`` at ``https://ap.provider-b.example/as4``).
        takeover_delay_s: after a key is handed to a provider (``POST .../handoff``), how long
            the provider takes to call Migrate (0 = at once).
        auto_takeover_after_s: when set, after eConnect's prepareToMigrate the first provider
            takes the party over by itself after this delay (it got the key out of band).
            None (default) = only on a handoff or an explicit migrate.

    Fault injection (``/api/`` routes only; changeable at runtime through ``POST /sandbox/faults``)
        seed: seed of the ``random.Random`` that decides errors and drops (0; None = a
            different sequence every run).
        latency_ms: added to every API call (0), with ``asyncio.sleep``.
        error_rate: share of API calls answered 500 or 503 without doing anything (0.0).
        throttle_rate: share of API calls answered 429 with ``Retry-After: 1`` whatever the
            request rate, as a gateway does in a bad minute (0.0). Drawn before ``error_rate``.
        rate_limit_rps: API calls per second (token bucket on the model clock, burst of one
            second) above which calls get 429 with ``Retry-After``; None (default) = no limit.
        drop_rate: share of API calls whose connection closes mid-response (0.0).
        drop_after_processing_share: of the dropped calls, the share dropped *after* the call
            took effect (the client cannot tell whether it did) (0.5).

    Other providers' SMPs and the Directory (``publications.py``)
        publications: ``(partyId, Publication)`` pairs: what the other provider's SMP holding
            the party publishes (document types, business card, how it answers) and whether the
            Directory stub lists its card. A party without one: the BIS 3 invoice alone, no card.

    Housekeeping
        seed_parties: ``(partyId, owner)`` pairs registered at start (owner ``econnect`` or a
            provider name), DNS already propagated.
        call_log_limit: how many API calls ``GET /sandbox/calls`` remembers (200 000).
        help_link: base of the ``helpLink`` of error bodies (``#CODE`` is appended).
    """

    client_id: str = "sandbox-client"
    client_secret: str = field(default="sandbox-secret", repr=False)
    username: str = "sandbox-user"
    password: str = field(default="sandbox-password", repr=False)
    token_ttl_s: float = 3600.0
    subscription_key: str | None = field(default=None, repr=False)

    access_point_url: str = "https://accp-ap.econnect.eu/as4/v1"
    access_point_certificate: str = "MIIFsandboxECONNECTcertificate=="
    environment_capabilities: tuple[tuple[str, bool], ...] = (
        ("invoices", True),
        ("invoiceResponse", False),
        ("orders", False),
        ("orderOnly", False),
        ("reviews", True),
    )

    key_ttl_s: float = 7 * 24 * 3600.0
    propagation_delay_s: float = 0.0
    repeat_prepare: RepeatPrepare = "overwrite"
    sml_zone: str = "participant.sml.test.tech.peppol.org"

    key_reject_status: int = 400
    delivery_view: DeliveryView = "dns"
    vary_seed: int | None = None

    providers: tuple[ProviderConfig, ...] = (
        ProviderConfig("provider-b", "https://ap.provider-b.example/as4"),
    )
    takeover_delay_s: float = 0.0
    auto_takeover_after_s: float | None = None

    seed: int | None = 0
    latency_ms: float = 0.0
    error_rate: float = 0.0
    throttle_rate: float = 0.0
    rate_limit_rps: float | None = None
    drop_rate: float = 0.0
    drop_after_processing_share: float = 0.5

    publications: tuple[tuple[str, Publication], ...] = ()
    seed_parties: tuple[tuple[str, str], ...] = ()
    call_log_limit: int = 200_000
    help_link: str = "https://psb.econnect.eu/introduction/errors.html"

    def __post_init__(self) -> None:
        if self.repeat_prepare not in ("overwrite", "same"):
            raise ValueError("repeat_prepare is 'overwrite' or 'same'")
        if self.delivery_view not in ("dns", "owner"):
            raise ValueError("delivery_view is 'dns' or 'owner'")
        if not 400 <= self.key_reject_status <= 499:
            raise ValueError("key_reject_status must be a 4xx status")
        for name in ("error_rate", "throttle_rate", "drop_rate", "drop_after_processing_share"):
            if not 0.0 <= float(getattr(self, name)) <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rate_limit_rps is not None and self.rate_limit_rps <= 0:
            raise ValueError("rate_limit_rps must be positive (or None for no limit)")
        if not self.providers:
            raise ValueError("at least one other provider is needed")
        if any(p.name == ECONNECT for p in self.providers):
            raise ValueError(f"{ECONNECT!r} is eConnect's own SMP id, not another provider")

    def effective(self) -> SandboxConfig:
        """This config with ``vary_seed`` applied (the values the sandbox really uses).

        Deterministic: the same ``vary_seed`` always gives the same values.
        """
        if self.vary_seed is None:
            return self
        rng = random.Random(self.vary_seed)
        status = rng.choice(KEY_REJECT_STATUSES)
        repeat: RepeatPrepare = rng.choice(("overwrite", "same"))
        return dataclasses.replace(self, key_reject_status=status, repeat_prepare=repeat)

    def public(self) -> dict[str, Any]:
        """The knobs as JSON (camelCase), without the secrets."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in ("client_secret", "password", "subscription_key"):
                continue
            value = getattr(self, f.name)
            if f.name == "providers":
                value = [{"name": p.name, "apUrl": p.ap_url} for p in value]
            elif f.name == "publications":
                value = {pid: publication.public() for pid, publication in value}
            elif isinstance(value, tuple):
                value = [list(v) if isinstance(v, tuple) else v for v in value]
            out[_camel(f.name)] = value
        return out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)
