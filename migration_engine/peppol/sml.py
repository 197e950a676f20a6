"""The SML as senders see it: the DNS names of a participant and the SMP they lead to.

The one module that imports dnspython. Facts as ``docs/peppol-network.md`` ("SML lookup") gives them:

- **NAPTR (BDXL, PFUOI 4.4)**: ``<b32>.iso6523-actorid-upis.<zone>`` where ``b32`` is the
  SHA-256 of the lowercased value (``ICD:id``), RFC 4648 base32 without ``=`` padding,
  lowercased. Of its NAPTR records only flag ``U`` with service ``Meta:SMP`` count, by order
  then preference; the record's ``!pattern!replacement!flags`` regexp applied to the name
  gives the SMP's base URL.
- **CNAME (legacy, PFUOI 4.0)**: ``B-<md5 hex>.iso6523-actorid-upis.<zone>``, a CNAME to the
  SMP host. Asked only with ``verify.cname_fallback`` and only when the NAPTR name does not
  exist. Its SMP URL is ``http://<CNAME target>`` (the spec's ``http://B-...`` reaches the same
  server; the target names the SMP, which is what a takeover check compares).

Queries go over UDP to ``verify.dns_server`` (``host:port``, ``[v6]:port`` or ``host``) or to
the system's resolvers, with ``verify.timeout_s``. A name that does not exist is an answer
(``not_registered``); a timeout, SERVFAIL or refusal raises ``NetworkLookupError``.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

import dns.exception
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.CNAME import CNAME
from dns.rdtypes.IN.NAPTR import NAPTR

from migration_engine.errors import ConfigError, NetworkLookupError

SCHEME = "iso6523-actorid-upis"
PEPPOL_PRODUCTION_ZONE = "participant.sml.prod.tech.peppol.org"
PEPPOL_TEST_ZONE = "participant.sml.test.tech.peppol.org"

Status = Literal["found", "not_registered", "no_smp_service"]

_MAX_REGEXP = 255  # a DNS character-string holds at most 255 bytes
# A quantified group whose body has a quantifier, e.g. (a+)+: catastrophic backtracking.
_NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*[*+}](?:[^()\\]|\\.)*\)[*+?{]")


def _zone(zone: str) -> str:
    return zone.strip().rstrip(".").lower()


def _value(participant: str) -> str:
    """The identifier value (``ICD:id``), without the ``iso6523-actorid-upis::`` scheme."""
    value = participant.strip()
    if value.lower().startswith(SCHEME + "::"):
        value = value[len(SCHEME) + 2 :]
    return value.lower()


def naptr_name(participant: str, zone: str) -> str:
    """The BDXL name whose NAPTR records say where the participant's SMP is."""
    digest = hashlib.sha256(_value(participant).encode("utf-8")).digest()
    label = base64.b32encode(digest).decode("ascii").rstrip("=").lower()
    return f"{label}.{SCHEME}.{_zone(zone)}"


def cname_name(participant: str, zone: str) -> str:
    """The legacy name (``B-`` + MD5 hex), a CNAME to the SMP host."""
    digest = hashlib.md5(_value(participant).encode("utf-8"), usedforsecurity=False).hexdigest()
    return f"B-{digest}.{SCHEME}.{_zone(zone)}"


def _split_regexp(regexp: str) -> tuple[str, str, str]:
    if not 4 <= len(regexp) <= _MAX_REGEXP:
        raise ValueError("the regexp is empty or too long")
    delim = regexp[0]
    if delim.isalnum() or delim in "\\ ":
        raise ValueError(f"{delim!r} cannot delimit a NAPTR regexp")
    parts: list[str] = []
    current: list[str] = []
    i = 1
    while i < len(regexp):
        char = regexp[i]
        if char == "\\" and i + 1 < len(regexp) and regexp[i + 1] == delim:
            current.append(delim)  # an escaped delimiter is a literal one
            i += 2
            continue
        if char == delim:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        i += 1
    parts.append("".join(current))
    if len(parts) != 3:
        raise ValueError("a NAPTR regexp has the form !pattern!replacement!flags")
    pattern, replacement, flags = parts
    if flags not in ("", "i"):
        raise ValueError(f"unknown NAPTR regexp flags {flags!r}")
    return pattern, replacement, flags


def _expand(replacement: str, match: re.Match[str]) -> str:
    """RFC 3402 substitution: ``\\1``..``\\9`` are groups, ``\\x`` is ``x``; nothing else is special."""
    out: list[str] = []
    i = 0
    while i < len(replacement):
        char = replacement[i]
        if char == "\\" and i + 1 < len(replacement):
            nxt = replacement[i + 1]
            if nxt.isdigit() and nxt != "0":
                group = int(nxt)
                out.append((match.group(group) or "") if group <= (match.re.groups or 0) else "")
            else:
                out.append(nxt)
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def apply_naptr_regexp(regexp: str, domain: str) -> str:
    """Apply a NAPTR ``!pattern!replacement!flags`` regexp to ``domain``; the result must be an
    http(s) URL. ``ValueError`` says why a record cannot be used.

    Safe on hostile input: the regexp is at most 255 characters, patterns with nested
    quantifiers are refused (no catastrophic backtracking on the <= 253-character name), group
    references are expanded by hand (no Python-specific escapes), and the result must be a
    plain URL without credentials or whitespace.
    """
    pattern, replacement, flags = _split_regexp(regexp)
    if _NESTED_QUANTIFIER.search(pattern):
        raise ValueError("the NAPTR regexp pattern has nested quantifiers")
    try:
        compiled = re.compile(pattern, re.IGNORECASE if flags == "i" else 0)
    except re.error as exc:
        raise ValueError(f"the NAPTR regexp pattern does not compile: {exc}") from None
    match = compiled.search(domain)
    if match is None:
        raise ValueError("the NAPTR regexp does not match the name")
    url = domain[: match.start()] + _expand(replacement, match) + domain[match.end() :]
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        raise ValueError(f"the NAPTR regexp gives {url!r}, not an http(s) URL")
    if any(c.isspace() for c in url) or parts.query or parts.fragment:
        raise ValueError(f"the NAPTR regexp gives {url!r}, not a plain SMP base URL")
    return url


def parse_server(text: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port``, ``v4`` or ``v6`` (port 53) of a DNS server; IP addresses only."""
    text = text.strip()
    host, port = text, 53
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigError(f"verify.dns_server {text!r}: expected [address]:port")
            port_text = rest[1:]
            port = int(port_text) if port_text.isdigit() else -1
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = int(port_text) if port_text.isdigit() else -1
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(f"verify.dns_server {text!r}: expected an IP address, optionally with :port") from None
    if not 0 < port < 65536:
        raise ConfigError(f"verify.dns_server {text!r}: the port must be 1-65535")
    return host, port


@dataclass(frozen=True)
class SmlAnswer:
    """What the SML zone says about one participant."""

    participant: str
    naptr_name: str
    cname_name: str
    status: Status
    smp_url: str | None = None
    found_by: Literal["naptr", "cname"] | None = None
    records: tuple[str, ...] = field(default=())  # the NAPTR/CNAME records seen, as text

    def as_dict(self) -> dict[str, Any]:
        return {
            "naptr_name": self.naptr_name,
            "cname_name": self.cname_name,
            "status": self.status,
            "smp_url": self.smp_url,
            "found_by": self.found_by,
        }


class SmlResolver:
    """Asks the SML zone where a participant's SMP is. Thread-safe (no cache)."""

    def __init__(self, *, zone: str, server: str = "", timeout_s: float = 5.0, cname_fallback: bool = False) -> None:
        self.zone = _zone(zone)
        self.cname_fallback = cname_fallback
        self.server = server.strip()
        self.timeout_s = timeout_s
        self._resolver: dns.resolver.Resolver | None = None
        if self.server:
            host, port = parse_server(self.server)
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [host]
            resolver.port = port
            self._resolver = self._limit(resolver)

    def _limit(self, resolver: dns.resolver.Resolver) -> dns.resolver.Resolver:
        resolver.timeout = self.timeout_s
        resolver.lifetime = self.timeout_s
        return resolver

    def _get_resolver(self) -> dns.resolver.Resolver:
        if self._resolver is None:  # the system's resolvers, read when first needed
            try:
                self._resolver = self._limit(dns.resolver.Resolver())
            except dns.resolver.NoResolverConfiguration as exc:
                raise ConfigError(f"no system DNS resolver is configured; set verify.dns_server ({exc})") from None
        return self._resolver

    def _query(self, name: str, rdtype: dns.rdatatype.RdataType, participant: str) -> list[Any] | None:
        """The records of ``name``; None when the name does not exist; [] when it has none of the type."""
        try:
            answer = self._get_resolver().resolve(name, rdtype, search=False, raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.Timeout:
            raise NetworkLookupError(
                f"no answer from DNS for {name} within {self.timeout_s:g} s", code="DNS", party_id=participant
            ) from None
        except dns.exception.DNSException as exc:
            raise NetworkLookupError(f"DNS lookup of {name} failed: {exc}", code="DNS", party_id=participant) from exc
        return list(answer.rrset) if answer.rrset is not None else []

    def lookup(self, participant: str) -> SmlAnswer:
        """Where the SML points ``participant`` (``ICD:id``) now."""
        naptr = naptr_name(participant, self.zone)
        cname = cname_name(participant, self.zone)
        records = self._query(naptr, dns.rdatatype.NAPTR, participant)
        if records is None:
            if self.cname_fallback:
                return self._lookup_cname(participant, naptr, cname)
            return SmlAnswer(participant, naptr, cname, "not_registered")
        seen = tuple(r.to_text() for r in records)
        usable = sorted(
            (
                r
                for r in records
                if isinstance(r, NAPTR) and _text(r.flags).upper() == "U" and _text(r.service).lower() == "meta:smp"
            ),
            key=lambda r: (r.order, r.preference),
        )
        for record in usable:
            try:
                url = apply_naptr_regexp(_text(record.regexp), naptr)
            except ValueError:
                continue  # an unusable record: try the next one
            return SmlAnswer(participant, naptr, cname, "found", url, "naptr", seen)
        return SmlAnswer(participant, naptr, cname, "no_smp_service", records=seen)

    def _lookup_cname(self, participant: str, naptr: str, cname: str) -> SmlAnswer:
        records = self._query(cname, dns.rdatatype.CNAME, participant)
        targets = [r.target for r in records or [] if isinstance(r, CNAME)]
        if not targets:
            return SmlAnswer(participant, naptr, cname, "not_registered")
        host = targets[0].to_text(omit_final_dot=True).lower()
        seen = tuple(r.to_text() for r in records or [])
        return SmlAnswer(participant, naptr, cname, "found", f"http://{host}", "cname", seen)


def _text(value: bytes | str) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def names(participant: str, zone: str) -> dict[str, str]:
    """Both DNS names of a participant, computed offline."""
    return {"naptr_name": naptr_name(participant, zone), "cname_name": cname_name(participant, zone)}
