"""The Peppol Directory client: a party's business card when its SMP publishes none.

The Directory's public REST search API (``network.directory_url``, by environment
``https://test-directory.peppol.eu`` or ``https://directory.peppol.eu``):
``GET {directory}/search/1.0/json?participant=iso6523-actorid-upis::ICD:VALUE``. It needs no
credentials and allows about 2 requests a second per client (``lookups.directory_per_s``;
the limit is kept by ``peppol.snapshots``, not here). The answer is parsed by
``peppol.businesscard.parse_directory_json``.

Like the SMP client (its ``bounded_get``): no redirects followed, answers above 2 MiB refused; timeouts,
refusals, 429 and 5xx raise ``NetworkLookupError`` (code ``DIRECTORY``) with the status; an
answer that is not a search result raises ``SmpAnswerError`` (the "answered garbage" kind).
"""

from __future__ import annotations

from urllib.parse import urlencode

import httpx

from migration_engine import __version__
from migration_engine.peppol.businesscard import BusinessCardError, parse_directory_json
from migration_engine.peppol.smp import PARTICIPANT_SCHEME, SmpAnswerError, bounded_get
from migration_engine.peppol.snapshot import BusinessCardSeen

SEARCH_PATH = "/search/1.0/json"


def search_url(base_url: str, party_id: str) -> str:
    """The search URL for exactly one participant (``ICD:value``)."""
    query = urlencode({"participant": f"{PARTICIPANT_SCHEME}::{party_id}"})
    return f"{base_url.rstrip('/')}{SEARCH_PATH}?{query}"


class DirectoryClient:
    """Reads the Directory's search API over a pooled httpx client; thread-safe."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 5.0,
        verify_tls: bool = True,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(
            timeout=timeout_s,
            verify=verify_tls,
            follow_redirects=False,
            transport=transport,
            headers={"Accept": "application/json", "User-Agent": f"peppol-migrate/{__version__}"},
        )

    def close(self) -> None:
        self._http.close()

    def search(self, party_id: str) -> bytes:
        """The raw JSON answer of a search for ``party_id``."""
        url = search_url(self.base_url, party_id)
        body = bounded_get(self._http, url, party_id=party_id, who="Directory", code="DIRECTORY", missing_ok=False)
        assert body is not None  # missing_ok=False: a 404 raises
        return body

    def business_card(self, party_id: str) -> BusinessCardSeen | None:
        """The party's card in the Directory; None when the Directory does not list it."""
        data = self.search(party_id)
        try:
            return parse_directory_json(data, party_id)
        except BusinessCardError as exc:
            raise SmpAnswerError(str(exc), code="DIRECTORY", party_id=party_id) from None
