"""Pre-registering parties from a file, so a sandbox started from the command line already holds
the parties a batch will migrate (``peppol-migrate sandbox --parties FILE``).

The file is CSV (``,`` or ``;``, detected from the header), one party a line:

    party_id,provider,document_types
    0106:12345678,econnect,invoices orders
    0106:87654321,provider-b,

- ``party_id``: any notation the engine accepts (``0106:12345678``, ``iso6523-actorid-upis::...``);
- ``provider``: ``econnect`` or another provider's name; a name the sandbox does not know yet is
  added as a provider with an example access point URL (``https://ap.NAME.example/as4``);
- ``document_types`` (optional): for a party at ``econnect``, the capabilities that are on
  (``invoices``, ``invoiceResponse``, ``orders``, ``orderOnly``, ``reviews``, separated by
  spaces, ``|`` or ``+``); the others are off. Empty: the environment's defaults. Another
  provider's SMP publishes one generic invoice type whatever the file says, so the column is
  refused there rather than silently ignored.

Blank lines and lines starting with ``#`` are skipped. The whole file is checked before
anything is registered: one bad line and nothing is (``InputError`` naming every bad line).

``write_batch`` then writes the batch file that migrates them all: a party at another provider
to eConnect, with a key that provider prepared; a party at eConnect to the sandbox's first
other provider.
"""

from __future__ import annotations

import csv
import os
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from migration_engine.errors import InputError
from migration_engine.sandbox import catalog
from migration_engine.sandbox.common import SandboxError, party_id
from migration_engine.sandbox.config import ECONNECT
from migration_engine.sandbox.model import SandboxModel

COLUMNS = ("party_id", "provider", "document_types")
REQUIRED = ("party_id", "provider")
MAX_PROBLEMS = 20
_PROVIDER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._~-]{0,63}")  # it goes into the handoff URL's path
_SEPARATORS = re.compile(r"[\s|+]+")


@dataclass(frozen=True)
class SeedParty:
    """One line of a parties file, checked: the canonical id, its owner, eConnect's capabilities."""

    line: int
    party_id: str
    provider: str
    capabilities: dict[str, str] | None


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
    if provider.lower() == ECONNECT:
        provider = ECONNECT
    elif not _PROVIDER.fullmatch(provider):
        raise InputError(f"provider {provider!r}: a name is letters, digits and - . _ ~ only")
    names = [n for n in _SEPARATORS.split(row.get("document_types", "")) if n]
    if names and provider != ECONNECT:
        raise InputError("document_types apply to parties at econnect only (another provider's SMP is generic)")
    unknown = [n for n in names if n not in catalog.CAPABILITIES]
    if unknown:
        raise InputError(f"unknown document type(s) {', '.join(unknown)}; known: {', '.join(catalog.CAPABILITIES)}")
    caps = {name: ("on" if name in names else "off") for name in catalog.CAPABILITIES} if names else None
    return SeedParty(line, pid, provider, caps)


def register_parties(model: SandboxModel, parties: list[SeedParty]) -> Counter[str]:
    """Register every party with its owner (DNS already propagated); parties per owner.

    An owner the sandbox does not know is added as a provider first."""
    for name in sorted({p.provider for p in parties} - {ECONNECT}):
        if name not in model.providers.ap_urls:
            model.add_provider(name, f"https://ap.{name}.example/as4")
    for party in parties:
        model.register(party.party_id, party.provider, party.capabilities)
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
            else:
                key = model.provider_prepare(party.provider, party.party_id)
                writer.writerow([party.party_id, "to-econnect", key, ""])
                counts["to-econnect"] += 1
    return counts
