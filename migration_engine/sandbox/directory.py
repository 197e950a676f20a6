"""The Peppol Directory stub: its REST search API for one participant.

``GET /directory/search/1.0/json?participant=iso6523-actorid-upis::ICD:VALUE`` answers like
the real Directory's JSON search (``version``, ``total-result-count``, ``matches`` with
``participantID``, ``docTypes`` and ``entities``). It lists:

- a party whose ``Publication`` has a business card with ``card_at`` ``directory`` or
  ``both``, wherever the party is now (the real Directory keeps a card until its SMP removes it),
  with the document types of that publication;
- a party eConnect serves whose PSB business card is on, with eConnect's document types.

Anyone else: no match (``total-result-count`` 0). No token, no faults; the base URL for
``network.directory_url`` is ``SandboxServer.directory_url`` (``{url}/directory``).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from migration_engine.peppol.snapshot import BusinessCardSeen
from migration_engine.sandbox.common import SandboxError, party_id
from migration_engine.sandbox.config import ECONNECT
from migration_engine.sandbox.model import SandboxModel
from migration_engine.sandbox.smp import DOCUMENT_SCHEME, PARTICIPANT_SCHEME, econnect_card


def listed(model: SandboxModel, pid: str) -> tuple[BusinessCardSeen, list[str]] | None:
    """The card and document type ids the Directory lists for ``pid``, or None."""
    with model.lock:
        model.apply_due_events()
        publication = model.publications.get(pid)
        card = publication.card_in_directory() if publication is not None else None
        if card is not None and publication is not None:
            return card, list(dict.fromkeys(dt.document_type_id for dt in publication.types()))
        cfg = model.econnect.configs.get(pid)
        if cfg is not None and model.sml.owner(pid) == ECONNECT:
            card = econnect_card(cfg.business_card)
            if card is not None:
                return card, list(dict.fromkeys(dt.document_type_id for dt in model.econnect.offered(pid)))
    return None


def match_json(pid: str, card: BusinessCardSeen, doc_ids: list[str]) -> dict[str, Any]:
    entity: dict[str, Any] = {"name": [{"name": card.name or "", "language": "en"}]}
    entity["countryCode"] = card.country_code or "NL"
    if card.geo_info:
        entity["geoInfo"] = card.geo_info
    if card.website:
        entity["websites"] = [card.website]
    if card.email:
        entity["contacts"] = [{"type": "primary", "name": card.name or "", "email": card.email}]
    if card.additional_info:
        entity["additionalInfo"] = card.additional_info
    return {
        "participantID": {"scheme": PARTICIPANT_SCHEME, "value": pid},
        "docTypes": [{"scheme": DOCUMENT_SCHEME, "value": d} for d in doc_ids],
        "entities": [entity],
    }


async def search(request: Request) -> Response:
    model: SandboxModel = request.app.state.model
    wanted = request.query_params.get("participant", "")
    scheme, sep, value = wanted.partition("::")
    if not sep or scheme != PARTICIPANT_SCHEME:
        return JSONResponse(
            {"error": f"participant must be {PARTICIPANT_SCHEME}::ICD:VALUE (this stub searches by participant only)"},
            400,
        )
    matches: list[dict[str, Any]] = []
    try:
        pid = party_id(value)
    except SandboxError:
        pid = None
    found = listed(model, pid) if pid is not None else None
    if pid is not None and found is not None:
        matches.append(match_json(pid, *found))
    count = len(matches)
    return JSONResponse(
        {
            "version": "1.0",
            "total-result-count": count,
            "used-result-count": count,
            "result-page-index": 0,
            "result-page-count": 1 if count else 0,
            "first-result-index": 0,
            "last-result-index": max(count - 1, 0),
            "query-terms": f"participant={wanted}",
            "creation-dt": model.clock.now().isoformat(),
            "matches": matches,
        }
    )


def routes() -> list[Route]:
    return [Route("/directory/search/1.0/json", search, methods=["GET"])]
