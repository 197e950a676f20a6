"""What the PSB API looks like: one method per endpoint, on top of an abstract ``_call``;
and the records of a call (``ApiCall`` for the audit trail), all without httpx.

``PsbEndpoints`` knows paths, bodies and answer shapes (``docs/psb-contract.md``, "Endpoints"); how a call is
authorised, sent, classified and reported is ``psb.PsbClient._call``'s business. Party ids,
user names and hook ids are percent-encoded as path segments (``0106:123`` -> ``0106%3A123``).

Answers are read leniently where the documentation is silent or has changed over time: an
empty body is ``{}`` / ``[]``, and a list may also come wrapped as ``{"items": [...]}`` (the
PSB's PagedResult). An answer of the wrong shape fails with code ``PSB{status}.BODY01``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

from migration_engine.errors import PsbError


@dataclass(frozen=True)
class ApiCall:
    """One HTTP exchange, for the audit trail. ``status`` is None when no answer came."""

    method: str
    path: str
    party_id: str | None
    status: int | None
    duration_ms: float
    request_id: str | None
    error_code: str | None


@dataclass
class Answer:
    """An HTTP answer, read and classified but not yet reported."""

    status: int | None  # None: no answer came
    body: Any
    error: PsbError | None
    request_id: str | None
    duration_ms: float


def safe_url(url: str) -> str:
    """The URL without user info, query or fragment, for audit and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _seg(value: str) -> str:
    """One path segment, percent-encoded (``0106:123`` -> ``0106%3A123``)."""
    return quote(value, safe="")


# Shapes of successful answers: each returns what is wrong, or None.
def _want_object(body: Any) -> str | None:
    return None if body is None or isinstance(body, dict) else "the answer is not a JSON object"


def _items(body: Any) -> list[Any] | None:
    """A JSON list, or the list in a ``{"items": [...]}`` page (the PSB's PagedResult)."""
    if body is None:
        return []
    if isinstance(body, dict) and isinstance(body.get("items"), list):
        body = body["items"]
    return body if isinstance(body, list) else None


def _want_list(body: Any) -> str | None:
    items = _items(body)
    if items is None or not all(isinstance(item, dict) for item in items):
        return "the answer is not a JSON list of objects"
    return None


def _want_key(body: Any) -> str | None:
    key = body.get("migrationKey") if isinstance(body, dict) else None
    return None if isinstance(key, str) and key else "the answer has no migrationKey"


class PsbEndpoints(ABC):
    """The PSB endpoints peppol-migrate uses. Every method raises a ``PsbError`` on failure."""

    @abstractmethod
    def _call(
        self,
        method: str,
        path: str,
        *,
        party_id: str | None,
        action: str,
        json_body: Any = None,
        params: Sequence[tuple[str, str]] | None = None,
        key: str | None = None,
        allow: tuple[int, ...] = (),
        validate: Callable[[Any], str | None] | None = None,
        expect_json: bool = True,
    ) -> Answer:
        """One authorised PSB call. Answers with a status in ``allow`` are returned, not raised;
        ``validate`` checks a 2xx body's shape; ``key`` is masked in any error text."""

    # -- endpoints: Peppol migration and configuration -------------------------------------

    def prepare_to_migrate(self, party_id: str) -> str:
        """Mark the party "in migration" and get the key for the new provider (outbound).

        ``GET /api/v1/peppol/{id}/prepareToMigrate`` -> ``{"migrationKey": ...}``. A repeat
        may return a new key that replaces the previous one at the SML.
        """
        answer = self._call(
            "GET", f"/api/v1/peppol/{_seg(party_id)}/prepareToMigrate",
            party_id=party_id, action="psb.prepare_to_migrate", validate=_want_key,
        )
        key: str = answer.body["migrationKey"]
        return key

    def get_party_config(self, party_id: str) -> dict[str, Any] | None:
        """The party's Peppol config (capabilities, businessCard, ...), or None if the PSB has none."""
        answer = self._call(
            "GET", f"/api/v1/peppol/config/party/{_seg(party_id)}",
            party_id=party_id, action="psb.get_party_config", validate=_want_object, allow=(404,),
        )
        return None if answer.status == 404 else dict(answer.body or {})

    def put_party_config(self, party_id: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update the party's Peppol config; returns the PSB's echo ({} if it sent none)."""
        answer = self._call(
            "PUT", f"/api/v1/peppol/config/party/{_seg(party_id)}", json_body=dict(config),
            party_id=party_id, action="psb.put_party_config", validate=_want_object,
        )
        return dict(answer.body or {})

    def submit_migration_key(self, party_id: str, key: str) -> dict[str, Any]:
        """Take the party over with the current provider's key (inbound).

        ``PUT /api/v1/peppol/config/party/{id}`` with ``{"migration": {"key": key}}``. A refused
        key comes back as a ``PsbPermanentError`` (status as the PSB chose) whose message has
        the key masked.
        """
        answer = self._call(
            "PUT", f"/api/v1/peppol/config/party/{_seg(party_id)}", json_body={"migration": {"key": key}},
            party_id=party_id, action="psb.submit_migration_key", validate=_want_object, key=key,
        )
        return dict(answer.body or {})

    def delete_party_config(self, party_id: str) -> None:
        """Remove the party's Peppol config; a 404 (already gone) counts as done."""
        self._call(
            "DELETE", f"/api/v1/peppol/config/party/{_seg(party_id)}",
            party_id=party_id, action="psb.delete_party_config", allow=(404,), expect_json=False,
        )

    def delivery_options(
        self,
        party_ids: Sequence[str],
        *,
        document_type_ids: Sequence[str] = (),
        document_family: str | None = None,
    ) -> list[dict[str, Any]]:
        """The SMP lookup for the parties, best match first; [] when nothing matches.

        ``GET /api/v1/peppol/deliveryOption?partyIds=...&documentTypeIds=...&documentFamily=...``.
        No call is made for an empty ``party_ids``.
        """
        if not party_ids:
            return []
        params = [("partyIds", p) for p in party_ids] + [("documentTypeIds", d) for d in document_type_ids]
        if document_family:
            params.append(("documentFamily", document_family))
        answer = self._call(
            "GET", "/api/v1/peppol/deliveryOption", params=params,
            party_id=party_ids[0] if len(party_ids) == 1 else None,
            action="psb.delivery_options", validate=_want_list,
        )
        return list(_items(answer.body) or [])

    # -- endpoints: hooks, users, enrollment -----------------------------------------------

    def get_hooks(self, party_id: str) -> list[dict[str, Any]]:
        """The party's hooks (``GET /api/v1/{id}/hook``)."""
        answer = self._call(
            "GET", f"/api/v1/{_seg(party_id)}/hook",
            party_id=party_id, action="psb.get_hooks", validate=_want_list,
        )
        return list(_items(answer.body) or [])

    def put_hook(self, party_id: str, hook: Mapping[str, Any]) -> dict[str, Any]:
        """Add or update one of the party's hooks; returns the PSB's echo (with its ``id``)."""
        answer = self._call(
            "PUT", f"/api/v1/{_seg(party_id)}/hook", json_body=dict(hook),
            party_id=party_id, action="psb.put_hook", validate=_want_object,
        )
        return dict(answer.body or {})

    def delete_hook(self, party_id: str, hook_id: str) -> None:
        """Delete one of the party's hooks; a 404 (already gone) counts as done."""
        self._call(
            "DELETE", f"/api/v1/{_seg(party_id)}/hook/{_seg(hook_id)}",
            party_id=party_id, action="psb.delete_hook", allow=(404,), expect_json=False,
        )

    def get_user_parties(self, user: str) -> list[dict[str, Any]]:
        """The user's party authorisations (``GET /api/v1/user/{name}/party``)."""
        answer = self._call(
            "GET", f"/api/v1/user/{_seg(user)}/party",
            party_id=None, action="psb.get_user_parties", validate=_want_list,
        )
        return list(_items(answer.body) or [])

    def put_user_party(self, user: str, user_party: Mapping[str, Any]) -> dict[str, Any]:
        """Add or update one party authorisation of the user (``{"id", "name", "permissions"}``)."""
        party_id = user_party.get("id")
        answer = self._call(
            "PUT", f"/api/v1/user/{_seg(user)}/party", json_body=dict(user_party),
            party_id=party_id if isinstance(party_id, str) else None,
            action="psb.put_user_party", validate=_want_object,
        )
        return dict(answer.body or {})

    def delete_user_party(self, user: str, party_id: str) -> None:
        """Remove the user's authorisation for the party; a 404 (already gone) counts as done."""
        self._call(
            "DELETE", f"/api/v1/user/{_seg(user)}/party/{_seg(party_id)}",
            party_id=party_id, action="psb.delete_user_party", allow=(404,), expect_json=False,
        )

    def enroll(self, party_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Enroll the party's services, users and hooks in one call (``PUT /api/v1-beta/{id}/enroll``)."""
        answer = self._call(
            "PUT", f"/api/v1-beta/{_seg(party_id)}/enroll", json_body=dict(body),
            party_id=party_id, action="psb.enroll", validate=_want_object,
        )
        return dict(answer.body or {})
