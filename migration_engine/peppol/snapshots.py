"""Taking snapshots: what the Peppol network says about a party now (the data is ``peppol.snapshot``).

API (for the preflight, the worker's steps and the reconciler)::

    from migration_engine.peppol.snapshots import NetworkLookups

    with NetworkLookups.from_settings(settings, clock=clock) as lookups:
        snap = lookups.snapshot("0106:12345678")        # -> PartySnapshot
        many = lookups.snapshots(["0106:1", "0208:2"])  # -> list[PartySnapshot], input order
        name, is_econnect = lookups.provider_of(snap.smp_url or "")
        lookups.stats()                                 # calls/retries/waits per dependency
        lookups.clear_cache()

- ``snapshot(party_id, *, metadata=True, business_card=True, fresh=False)``: never raises for
  network trouble; the answer is ``snap.lookup`` (one of ``snapshot.LOOKUP_ANSWERS``) with what
  went wrong in ``snap.problems``. It raises ``InvalidParticipantId`` (an ``InputError``) only for
  an id outside the Peppol syntax; scheme checks (unknown/removed ICD, check digits) are
  warnings in ``snap.extra["warnings"]`` (``identifiers.parse_lenient``). ``metadata=False``
  skips the ServiceMetadata calls (document types without processes and transport profiles);
  ``business_card=False`` skips the card; ``fresh=True`` asks again whatever the cache holds.
- ``snapshots(ids, **same options)``: all of them, up to ``lookups.max_concurrency`` at once;
  every id is checked before any lookup starts.
- ``snap.extra`` holds ``naptr_name``, ``found_by`` (``naptr``/``cname``) and ``warnings`` when
  there are any. ``snap.econnect`` is True when the SMP is ``verify.econnect_smp_host``'s
  (``snap.provider`` is then ``"eConnect"``); otherwise ``provider`` is the
  ``network.known_smps`` name of the SMP, or None.
- Settings: ``verify.sml_zone``, ``verify.dns_server``, ``verify.timeout_s``,
  ``verify.cname_fallback``, ``verify.econnect_smp_host``, ``network.known_smps``,
  ``network.directory_url``, ``lookups.*`` (``docs/configuration.md``). ``budgets``, when given
  (the runtime's ``limiter.SharedBudgets``, from ``[budgets]``), adds the budget every worker of
  the database shares to each dependency's limiter: DNS, each SMP, the Directory.
- Tests build one directly: ``NetworkLookups(sml=SmlResolver(...), smp=SmpClient(transport=...),
  directory=DirectoryClient(...) or None, clock=ManualClock(), limits=LookupsSettings(...))``.

How the answer is decided (``docs/peppol-network.md``, "Snapshots and lookups"):

1. SML (DNS): no NAPTR name -> ``not_registered``; NAPTR records but none usable
   (``U``/``Meta:SMP`` with a regexp giving an http(s) URL) -> ``smp_garbage``; DNS timeout or
   SERVFAIL after the retries -> ``technical_failure``.
2. The SMP's ServiceGroup: 404 or 410 -> ``smp_missing``; an answer that is not a
   ServiceGroup (or another 4xx) -> ``smp_garbage``; timeout, 429, 5xx after the retries ->
   ``technical_failure``. Otherwise ``registered``.
3. ServiceMetadata per listed document type: processes and transport profiles. A missing or
   unreadable one is a problem (the type is kept, without processes); a technical failure
   after the retries makes the whole snapshot ``technical_failure`` (what was seen so far kept).
4. Business card: the SMP's ``/businesscard/{participant}``, else the Directory. Neither ever
   changes the answer; their trouble is a problem.

Cache: a snapshot that is not ``technical_failure`` is reused for ``lookups.cache_s`` seconds
(per party and options), so one run asks the network once per party.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from migration_engine.clock import Clock, SystemClock
from migration_engine.errors import NetworkLookupError
from migration_engine.limiter import Budgets
from migration_engine.peppol.businesscard import BusinessCardError, parse_business_card_xml
from migration_engine.peppol.directory import DirectoryClient
from migration_engine.peppol.identifiers import parse_lenient
from migration_engine.peppol.limits import MISSING, Limiter, TtlCache
from migration_engine.peppol.sml import SmlAnswer, SmlResolver
from migration_engine.peppol.smp import DOCUMENT_SCHEME, SmpClient, is_technical
from migration_engine.peppol.snapshot import (
    NOT_REGISTERED,
    REGISTERED,
    SMP_GARBAGE,
    SMP_MISSING,
    TECHNICAL_FAILURE,
    BusinessCardSeen,
    PartySnapshot,
    ServiceSeen,
)
from migration_engine.peppol.verification import smp_matches
from migration_engine.settings import LookupsSettings, Settings

ECONNECT_PROVIDER = "eConnect"


def parse_known_smps(entries: Sequence[str]) -> list[tuple[str, str]]:
    """``host[:port][/path]=Name`` entries as (prefix, name), longest prefix first."""
    parsed = []
    for entry in entries:
        where, sep, name = entry.partition("=")
        if not sep or not where.strip() or not name.strip() or any(c.isspace() for c in where.strip()):
            raise ValueError(f"network.known_smps entry {entry!r}: expected host[:port][/path]=Provider name")
        parsed.append((where.strip(), name.strip()))
    return sorted(parsed, key=lambda p: len(p[0].split("://", 1)[-1].rstrip("/")), reverse=True)


def provider_of(smp_url: str, *, econnect_smp: str, known_smps: Sequence[tuple[str, str]]) -> tuple[str | None, bool]:
    """(provider name or None, whether it is eConnect's SMP) of an SMP base URL; ``known_smps``
    as ``parse_known_smps`` gives them (longest prefix first)."""
    if econnect_smp.strip() and smp_matches(smp_url, econnect_smp):
        return ECONNECT_PROVIDER, True
    return next((name for where, name in known_smps if smp_matches(smp_url, where)), None), False


def document_type_id(scheme: str, value: str) -> str:
    """The id a snapshot stores: the bare value in ``busdox-docid-qns``, else ``scheme::value``."""
    return value if scheme == DOCUMENT_SCHEME else f"{scheme}::{value}"


def _smp_host(smp_url: str) -> str | None:
    parts = urlsplit(smp_url)
    if not parts.hostname:
        return None
    return parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"


class NetworkLookups:
    """SML, SMP and Directory lookups, bounded, retried and cached for one run; thread-safe."""

    def __init__(
        self,
        *,
        sml: SmlResolver,
        smp: SmpClient,
        directory: DirectoryClient | None = None,
        clock: Clock | None = None,
        econnect_smp: str = "",
        known_smps: Sequence[str] = (),
        limits: LookupsSettings | None = None,
        budgets: Budgets | None = None,
    ) -> None:
        self.sml = sml
        self.smp = smp
        self.directory = directory
        self.clock: Clock = clock or SystemClock()
        self.econnect_smp = econnect_smp.strip()
        self.known_smps = parse_known_smps(known_smps)
        self.limits = limits or LookupsSettings()
        self.budgets = budgets
        self.cache = TtlCache(self.limits.cache_s, self.clock)
        self.dns = self._limiter("dns", self.limits.dns_per_s, "dns")
        self.directory_limiter = self._limiter("directory", self.limits.directory_per_s, "directory")
        self._smps: dict[str, Limiter] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Clock | None = None, budgets: Budgets | None = None
    ) -> NetworkLookups:
        v, network = settings.verify, settings.network
        return cls(
            sml=SmlResolver(
                zone=v.sml_zone, server=v.dns_server, timeout_s=v.timeout_s, cname_fallback=v.cname_fallback
            ),
            smp=SmpClient(timeout_s=v.timeout_s),
            directory=DirectoryClient(network.directory_url, timeout_s=v.timeout_s) if network.directory_url else None,
            clock=clock,
            econnect_smp=v.econnect_smp_host,
            known_smps=network.known_smps,
            limits=settings.lookups,
            budgets=budgets,
        )

    def close(self) -> None:
        self.smp.close()
        if self.directory is not None:
            self.directory.close()

    def __enter__(self) -> NetworkLookups:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- limits --------------------------------------------------------------------------------

    def _limiter(self, name: str, rate: float, budget: str, key: str = "") -> Limiter:
        return Limiter(
            name,
            rate=rate,
            concurrency=self.limits.max_concurrency,
            clock=self.clock,
            attempts=self.limits.attempts,
            backoff_s=self.limits.backoff_s,
            shared=self.budgets.limiter(budget, key) if self.budgets is not None else None,
        )

    def smp_limiter(self, smp_url: str) -> Limiter:
        """The limiter of one SMP (by its base URL): ``lookups.smp_per_s`` applies to each SMP."""
        key = smp_url.rstrip("/")
        with self._lock:
            if key not in self._smps:
                self._smps[key] = self._limiter(f"smp {key}", self.limits.smp_per_s, "smp", key)
            return self._smps[key]

    def stats(self) -> dict[str, Any]:
        """Calls, retries and seconds waited per dependency, and cache hits: for reports and the bench."""
        with self._lock:
            smps = [limiter.stats() for limiter in self._smps.values()]
        return {
            "dns": self.dns.stats(),
            "directory": self.directory_limiter.stats(),
            "smps": smps,
            "cache": {"entries": len(self.cache), "hits": self.cache.hits},
        }

    def clear_cache(self) -> None:
        self.cache.clear()

    # -- providers -----------------------------------------------------------------------------

    def provider_of(self, smp_url: str) -> tuple[str | None, bool]:
        """(provider name or None, whether it is eConnect's SMP) of an SMP base URL."""
        return provider_of(smp_url, econnect_smp=self.econnect_smp, known_smps=self.known_smps)

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(
        self, party_id: str, *, metadata: bool = True, business_card: bool = True, fresh: bool = False
    ) -> PartySnapshot:
        """What the network says about ``party_id`` now (see the module's docstring)."""
        pid, warnings = parse_lenient(party_id)
        key = (pid.canonical, metadata, business_card)
        if not fresh:
            cached = self.cache.get(key)
            if cached is not MISSING:
                assert isinstance(cached, PartySnapshot)
                return cached
        snap = _Taking(self, pid.canonical, warnings).take(metadata=metadata, business_card=business_card)
        if snap.lookup != TECHNICAL_FAILURE:
            self.cache.put(key, snap)
        return snap

    def snapshots(
        self, party_ids: Iterable[str], *, metadata: bool = True, business_card: bool = True, fresh: bool = False
    ) -> list[PartySnapshot]:
        """A snapshot of each id, in order, ``lookups.max_concurrency`` at once."""
        ids = list(party_ids)
        for text in ids:
            parse_lenient(text)  # every id checked before the network is asked anything
        if not ids:
            return []

        def one(text: str) -> PartySnapshot:
            return self.snapshot(text, metadata=metadata, business_card=business_card, fresh=fresh)

        with ThreadPoolExecutor(max_workers=min(self.limits.max_concurrency, len(ids))) as pool:
            return list(pool.map(one, ids))


class _Taking:
    """One snapshot being taken: what has been seen so far."""

    def __init__(self, lookups: NetworkLookups, party_id: str, warnings: tuple[str, ...]) -> None:
        self.lookups = lookups
        self.party_id = party_id
        self.taken_at = lookups.clock.now()
        self.problems: list[str] = []
        self.extra: dict[str, Any] = {"warnings": list(warnings)} if warnings else {}
        self.smp_url: str | None = None
        self.provider: str | None = None
        self.econnect = False
        self.services: list[ServiceSeen] = []
        self.card: BusinessCardSeen | None = None

    def done(self, lookup: str) -> PartySnapshot:
        return PartySnapshot(
            party_id=self.party_id,
            taken_at=self.taken_at,
            lookup=lookup,
            smp_url=self.smp_url,
            smp_host=_smp_host(self.smp_url) if self.smp_url else None,
            provider=self.provider,
            services=tuple(self.services),
            business_card=self.card,
            problems=tuple(self.problems),
            extra=self.extra,
            econnect=self.econnect,
        )

    def take(self, *, metadata: bool, business_card: bool) -> PartySnapshot:
        lookups = self.lookups
        try:
            answer: SmlAnswer = lookups.dns.call(lambda: lookups.sml.lookup(self.party_id))
        except NetworkLookupError as exc:
            self.problems.append(f"SML: {exc.message}")
            return self.done(TECHNICAL_FAILURE)
        self.extra["naptr_name"] = answer.naptr_name
        if answer.found_by:
            self.extra["found_by"] = answer.found_by
        if answer.status == "not_registered":
            return self.done(NOT_REGISTERED)
        if answer.status == "no_smp_service" or answer.smp_url is None:
            shown = "; ".join(r[:200] for r in answer.records[:3])
            self.problems.append(f"SML: NAPTR record(s) but none gives an SMP URL (U, Meta:SMP): {shown}")
            return self.done(SMP_GARBAGE)
        smp_url = self.smp_url = answer.smp_url
        self.provider, self.econnect = lookups.provider_of(smp_url)
        limiter = lookups.smp_limiter(smp_url)
        try:
            group = limiter.call(lambda: lookups.smp.service_group(smp_url, self.party_id))
        except NetworkLookupError as exc:
            self.problems.append(f"SMP ServiceGroup: {exc.message}")
            if is_technical(exc):
                return self.done(TECHNICAL_FAILURE)
            return self.done(SMP_MISSING if exc.status == 410 else SMP_GARBAGE)
        if group is None:
            self.problems.append("SMP ServiceGroup: not found (HTTP 404)")
            return self.done(SMP_MISSING)
        seen: dict[str, None] = {}
        for ref in group.references:
            doc_id = document_type_id(ref.scheme, ref.value)
            if doc_id in seen:
                continue
            seen[doc_id] = None
            if not metadata:
                self.services.append(ServiceSeen(doc_id))
                continue
            full = f"{ref.scheme}::{ref.value}"
            try:
                found = limiter.call(lambda full=full: lookups.smp.service_metadata(smp_url, self.party_id, full))  # type: ignore[misc]
            except NetworkLookupError as exc:
                self.services.append(ServiceSeen(doc_id))
                self.problems.append(f"SMP ServiceMetadata {doc_id}: {exc.message}")
                if is_technical(exc):
                    return self.done(TECHNICAL_FAILURE)
                continue
            if found is None:
                self.services.append(ServiceSeen(doc_id))
                self.problems.append(f"SMP ServiceMetadata {doc_id}: listed in the ServiceGroup but not found")
                continue
            processes = tuple(dict.fromkeys(e.process_id for e in found.endpoints if e.process_id))
            profiles = tuple(dict.fromkeys(e.transport_profile for e in found.endpoints if e.transport_profile))
            self.services.append(ServiceSeen(doc_id, processes, profiles))
        if business_card:
            self.card = self._smp_card(limiter, smp_url)
            if self.card is None and lookups.directory is not None:
                self.card = self._directory_card(lookups.directory)
        return self.done(REGISTERED)

    def _smp_card(self, limiter: Limiter, smp_url: str) -> BusinessCardSeen | None:
        try:
            data = limiter.call(lambda: self.lookups.smp.business_card(smp_url, self.party_id))
        except NetworkLookupError as exc:
            if exc.status not in (400, 403, 405, 410, 501):  # SMPs without the business card API answer these
                self.problems.append(f"SMP business card: {exc.message}")
            return None
        if data is None:
            return None
        try:
            return parse_business_card_xml(data)
        except BusinessCardError as exc:
            self.problems.append(f"SMP business card: {exc}")
            return None

    def _directory_card(self, directory: DirectoryClient) -> BusinessCardSeen | None:
        try:
            return self.lookups.directory_limiter.call(lambda: directory.business_card(self.party_id))
        except NetworkLookupError as exc:
            self.problems.append(f"Directory: {exc.message}")
            return None
