"""Pre-registering parties from a file, so a sandbox started from the command line already holds
the parties a batch will migrate (``peppol-migrate sandbox --parties FILE``).

The file is CSV (``,`` or ``;``, detected from the header), one party a line:

    party_id,provider,document_types,card_name,card_country,smp_answer
    0106:12345678,econnect,invoices orders,Acme BV,NL,
    0106:87654321,provider-b,invoices orders despatch-advice,Beta BV,NL,
    0106:11112222,provider-c,,,,missing
    0106:33334444,none,,,,

- ``party_id``: any notation the engine accepts (``0106:12345678``, ``iso6523-actorid-upis::...``);
- ``provider``: ``econnect``, another provider's name, or ``none`` (registered nowhere: no
  NAPTR record); a name the sandbox does not know yet is added as a provider with an example
  access point URL (``https://ap.NAME.example/as4``);
- ``document_types`` (optional, separated by spaces, ``|`` or ``+``): for a party at
  ``econnect``, the capabilities that are on (``invoices``, ``invoiceResponse``, ``orders``,
  ``orderOnly``, ``reviews``), the others off; empty: the environment's defaults. For a party at
  another provider, what its SMP publishes: capability names (their document types), document
  type short names (``invoice``, ``credit-note``, ``cii``, ``nlcius``, ``invoice-response``,
  ``order``, ``order-response``, ``order-only``, ``mlr``, ``despatch-advice``, ``catalogue``)
  or full document type ids; empty: the BIS 3 invoice alone;
- ``card_name``, ``card_country``, ``card_email``, ``card_website``, ``card_geo``,
  ``card_info`` (optional): the party's business card. At ``econnect`` it is the PSB's card
  (state on); elsewhere the publication's;
- ``card_at`` (optional, not for ``econnect``): ``both`` (default), ``smp``, ``directory`` or
  ``none``: where the card is published (the SMP's ``/businesscard``, the Directory stub);
- ``smp_answer`` (optional, not for ``econnect``): ``ok`` (default), ``missing`` (the SMP answers
  404 though the SML points at it), ``garbage`` (an HTML page) or ``error`` (HTTP 500).

Blank lines and lines starting with ``#`` are skipped. The whole file is checked before
anything is registered: one bad line and nothing is (``InputError`` naming every bad line).

``write_batch`` then writes the batch file that migrates them all: a party at another provider
to eConnect, with a key that provider prepared; a party at eConnect to the sandbox's first
other provider; a party registered nowhere to eConnect, with a well-formed key no SML issued
(the preflight tells it is not registered; a migration of it fails on the key).
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from migration_engine.errors import InputError
from migration_engine.keys import generate_key
from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox import catalog
from migration_engine.sandbox.common import SandboxError, party_id
from migration_engine.sandbox.config import ECONNECT
from migration_engine.sandbox.model import SandboxModel
from migration_engine.sandbox.publications import CARD_PLACES, SMP_ANSWERS, Publication

NOWHERE = "none"
CARD_COLUMNS = {
    "card_name": "name",
    "card_country": "country_code",
    "card_email": "email",
    "card_website": "website",
    "card_geo": "geo_info",
    "card_info": "additional_info",
}
COLUMNS = ("party_id", "provider", "document_types", *CARD_COLUMNS, "card_at", "smp_answer")
REQUIRED = ("party_id", "provider")
MAX_PROBLEMS = 20
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,63}")  # it goes into the handoff URL's path
_SEPARATORS = re.compile(r"[\s|+]+")


@dataclass(frozen=True)
class SeedParty:
    """One line of a parties file, checked: the canonical id, its owner (``none``: nobody),
    eConnect's capabilities and card, or another provider's publication."""

    line: int
    party_id: str
    provider: str
    capabilities: dict[str, str] | None
    publication: Publication | None = None
    econnect_card: dict[str, str] | None = None


def read_parties(path: Path) -> list[SeedParty]:
    """Every party of the file, or ``InputError`` (exit 2) naming each bad line."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{path}: no such parties file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{path}: cannot read the parties file: {exc}") from None
    numbered = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if _is_data(line)]
    if not numbered:
        raise InputError(f"{path}: empty parties file; its header is {','.join(COLUMNS)}")
    header_line, header = numbered[0]
    delimiter = ";" if header.count(";") > header.count(",") else ","
    columns = [c.strip().lower() for c in next(csv.reader([header], delimiter=delimiter))]
    missing = [c for c in REQUIRED if c not in columns]
    unknown = [c for c in columns if c not in COLUMNS]
    if missing or unknown:
        why = f"lacks the column(s) {', '.join(missing)}" if missing else f"has unknown column(s) {', '.join(unknown)}"
        raise InputError(f"{path} line {header_line}: the header {why}; the columns are {', '.join(COLUMNS)}")
    parties: list[SeedParty] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for n, line in numbered[1:]:
        values = next(csv.reader([line], delimiter=delimiter))
        if len(values) > len(columns):
            problems.append(f"line {n}: {len(values)} fields, the header has {len(columns)}")
            continue
        row = {c: v.strip() for c, v in zip(columns, values, strict=False)}
        try:
            party = _check(n, row)
        except InputError as exc:
            problems.append(f"line {n}: {exc}")
            continue
        if party.party_id in seen:
            problems.append(f"line {n}: party {party.party_id} is on line {seen[party.party_id]} already")
            continue
        seen[party.party_id] = n
        parties.append(party)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        more = f"\n  ... and {len(problems) - MAX_PROBLEMS} more" if len(problems) > MAX_PROBLEMS else ""
        raise InputError(f"{path}: nothing registered, bad lines:\n  " + "\n  ".join(shown) + more)
    return parties


def _is_data(line: str) -> bool:
    stripped = line.strip()
    return bool(stripped) and not stripped.startswith("#")


def _check(line: int, row: dict[str, str]) -> SeedParty:
    try:
        pid = party_id(row.get("party_id", ""))
    except SandboxError as exc:
        raise InputError(f"party_id {row.get('party_id', '')!r}: {exc.message}") from None
    provider = row.get("provider", "")
    if not provider:
        raise InputError("provider is empty: econnect or another provider's name")
    if provider.lower() in (ECONNECT, NOWHERE):
        provider = provider.lower()
    elif not _PROVIDER.fullmatch(provider):
        raise InputError(f"provider {provider!r}: a name is letters, digits and - . _ ~ only")
    names = [n for n in _SEPARATORS.split(row.get("document_types", "")) if n]
    card_fields = {field: row[column] for column, field in CARD_COLUMNS.items() if row.get(column)}
    card_at, smp_answer = row.get("card_at", "").lower() or "both", row.get("smp_answer", "").lower() or "ok"
    if card_at not in CARD_PLACES:
        raise InputError(f"card_at {card_at!r}: one of {', '.join(CARD_PLACES)}")
    if smp_answer not in SMP_ANSWERS:
        raise InputError(f"smp_answer {smp_answer!r}: one of {', '.join(SMP_ANSWERS)}")
    if provider == ECONNECT:
        if row.get("card_at") or row.get("smp_answer"):
            raise InputError("card_at and smp_answer apply to parties at other providers (eConnect's SMP answers)")
        unknown = [n for n in names if n not in catalog.CAPABILITIES]
        if unknown:
            raise InputError(
                f"unknown capability(ies) {', '.join(unknown)} for a party at econnect; "
                f"known: {', '.join(catalog.CAPABILITIES)}"
            )
        caps = {name: ("on" if name in names else "off") for name in catalog.CAPABILITIES} if names else None
        card = _psb_card(card_fields) if card_fields else None
        return SeedParty(line, pid, provider, caps, econnect_card=card)
    try:
        types = catalog.document_type_ids(names) if names else None
    except ValueError as exc:
        raise InputError(str(exc)) from None
    publication = None
    if types is not None or card_fields or smp_answer != "ok":
        publication = Publication(
            document_types=types,
            business_card=BusinessCardSeen(**card_fields) if card_fields else None,
            card_at=card_at,  # type: ignore[arg-type]  # checked against CARD_PLACES above
            smp_answer=smp_answer,  # type: ignore[arg-type]  # checked against SMP_ANSWERS above
        )
    return SeedParty(line, pid, provider, None, publication)


def _psb_card(fields: dict[str, str]) -> dict[str, str]:
    """The PSB's businessCard (enrollment style) of the card columns, published (state on)."""
    names = {"name": "name", "country_code": "countryCode", "email": "email", "geo_info": "geoInfo"}
    card = {names.get(field, field): value for field, value in fields.items()}
    card["state"] = "on"
    return card


def register_parties(model: SandboxModel, parties: list[SeedParty]) -> Counter[str]:
    """Register every party with its owner (DNS already propagated); parties per owner.

    An owner the sandbox does not know is added as a provider first; a party of ``none`` is
    registered nowhere (only its publication, if any, is kept: e.g. a Directory card)."""
    for name in sorted({p.provider for p in parties} - {ECONNECT, NOWHERE}):
        if name not in model.providers.ap_urls:
            model.add_provider(name, f"https://ap.{name}.example/as4")
    for party in parties:
        if party.provider != NOWHERE:
            model.register(party.party_id, party.provider, party.capabilities)
        if party.publication is not None:
            model.publish(party.party_id, party.publication)
        if party.econnect_card is not None:
            with model.lock:
                model.econnect.apply(party.party_id, None, party.econnect_card)
    return Counter(p.provider for p in parties)


def write_batch(model: SandboxModel, parties: list[SeedParty], path: Path) -> Counter[str]:
    """Write the batch file that migrates every party (see the module's docstring); rows per direction.

    Inbound rows carry a migration key, so the file is written readable by its owner only."""
    outbound_to = model.config.providers[0].name
    counts: Counter[str] = Counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["party_id", "direction", "migration_key", "new_provider"])
        for party in parties:
            if party.provider == ECONNECT:
                writer.writerow([party.party_id, "from-econnect", "", outbound_to])
                counts["from-econnect"] += 1
            elif party.provider == NOWHERE:
                writer.writerow([party.party_id, "to-econnect", generate_key(), ""])
                counts["to-econnect"] += 1
            else:
                key = model.provider_prepare(party.provider, party.party_id)
                writer.writerow([party.party_id, "to-econnect", key, ""])
                counts["to-econnect"] += 1
    return counts
