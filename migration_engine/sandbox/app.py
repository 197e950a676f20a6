"""The sandbox's HTTP routes: identity server, PSB API, other providers, inspection.

Every ``/api/`` answer that is an error carries the PSB's error body; every ``/api/`` answer
carries ``X-Request-Id`` (added by ``FaultMiddleware``). ``/sandbox/`` routes need no token
and see no faults; nor do the SMPs under ``/smp/`` (``smp.py``) and the Directory stub under
``/directory/`` (``directory.py``).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from migration_engine.sandbox.common import SandboxError, error_body, party_id
from migration_engine.sandbox.config import SandboxConfig
from migration_engine.sandbox.directory import routes as directory_routes
from migration_engine.sandbox.faults import PARTY_ID, REQUEST_ID, FaultMiddleware, FaultState
from migration_engine.sandbox.identity import OAuthError
from migration_engine.sandbox.model import SandboxModel
from migration_engine.sandbox.publications import from_json as publication_from_json
from migration_engine.sandbox.smp import routes as smp_routes

Handler = Callable[[Request], Awaitable[Response]]
log = logging.getLogger(__name__)


def _model(request: Request) -> SandboxModel:
    model: SandboxModel = request.app.state.model
    return model


def _error(request: Request, exc: SandboxError, headers: dict[str, str] | None = None) -> Response:
    model = _model(request)
    request_id = request.scope.get(REQUEST_ID) or secrets.token_hex(16)
    body = error_body(exc.code, exc.message, request_id, model.config.help_link, model.clock.now())
    return Response(body, exc.status, headers=headers, media_type="application/json")


async def _json(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        return json.loads(raw)
    except ValueError:
        raise SandboxError(400, "the request body is not valid JSON") from None


def api(handler: Handler) -> Handler:
    """A PSB endpoint: needs a valid bearer token; errors become the PSB's error body."""

    async def wrapped(request: Request) -> Response:
        model = _model(request)
        try:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not model.tokens.valid(token.strip()):
                return _error(
                    request,
                    SandboxError(401, "Unauthorized: the bearer token is missing, invalid or expired."),
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            wanted = model.config.subscription_key
            if wanted and not secrets.compare_digest(request.headers.get("subscription-key", ""), wanted):
                return _error(
                    request, SandboxError(401, "Access denied: missing or invalid Subscription-Key.")
                )
            return await handler(request)
        except SandboxError as exc:
            return _error(request, exc)
        except ClientDisconnect:  # the client went away mid-request (a killed worker): no one to answer
            return Response(status_code=499)
        except Exception:  # a sandbox bug: say so in the PSB's shape, keep the traceback in the log
            log.exception("sandbox: unexpected error in %s %s", request.method, request.url.path)
            return _error(request, SandboxError(500, "Unexpected error in the sandbox (see its log)."))

    return wrapped


def sandbox(handler: Handler) -> Handler:
    """A test-only endpoint: no token; errors in the same body shape."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except SandboxError as exc:
            return _error(request, exc)

    return wrapped


def _pid(request: Request, name: str = "partyId") -> str:
    return party_id(request.path_params[name])


# -- identity -----------------------------------------------------------------------------------


async def token(request: Request) -> Response:
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True))
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic" and "client_id" not in form:
        try:
            client_id, _, secret = base64.b64decode(credentials).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            client_id, secret = "", ""
        form.update(client_id=client_id, client_secret=secret)
    try:
        answer = _model(request).tokens.issue(form)
    except OAuthError as exc:
        return JSONResponse({"error": exc.error, "error_description": exc.description}, 400)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


# -- PSB: Peppol --------------------------------------------------------------------------------


@api
async def prepare_to_migrate(request: Request) -> Response:
    return JSONResponse({"migrationKey": _model(request).psb_prepare_to_migrate(_pid(request))})


@api
async def list_configs(request: Request) -> Response:
    return JSONResponse({"items": [{"id": pid} for pid in _model(request).psb_list_configs()]})


@api
async def get_config(request: Request) -> Response:
    return JSONResponse(_model(request).psb_get_config(_pid(request)))


@api
async def put_config(request: Request) -> Response:
    return JSONResponse(_model(request).psb_put_config(_pid(request), await _json(request)))


@api
async def delete_config(request: Request) -> Response:
    _model(request).psb_delete_config(_pid(request))
    return Response(status_code=200)


def _many(request: Request, name: str) -> list[str]:
    return [part for value in request.query_params.getlist(name) for part in value.split(",") if part.strip()]


@api
async def delivery_option(request: Request) -> Response:
    party_ids = _many(request, "partyIds")
    if not party_ids:
        raise SandboxError(400, "partyIds is required (repeat the parameter for several parties)")
    if len(party_ids) == 1:
        with contextlib.suppress(SandboxError):
            request.scope[PARTY_ID] = party_id(party_ids[0])  # the call log's partyId
    options = _model(request).delivery_options(
        party_ids,
        _many(request, "documentTypeIds"),
        request.query_params.get("documentFamily"),
        request.query_params.get("preferredDocumentTypeId"),
    )
    return JSONResponse(options)


# -- PSB: hooks, users, enrollment --------------------------------------------------------------


@api
async def list_hooks(request: Request) -> Response:
    return JSONResponse(_model(request).list_hooks(_pid(request)))


@api
async def put_hook(request: Request) -> Response:
    return JSONResponse(_model(request).put_hook(_pid(request), await _json(request)))


@api
async def delete_hook(request: Request) -> Response:
    _model(request).delete_hook(_pid(request), request.path_params["hookId"])
    return Response(status_code=200)


@api
async def list_user_parties(request: Request) -> Response:
    return JSONResponse(_model(request).list_user_parties(request.path_params["name"]))


@api
async def put_user_party(request: Request) -> Response:
    body = await _json(request)
    if isinstance(body, dict):
        with contextlib.suppress(SandboxError):
            request.scope[PARTY_ID] = party_id(body.get("id"))  # the call log's partyId
    return JSONResponse(_model(request).put_user_party(request.path_params["name"], body))


@api
async def delete_user_party(request: Request) -> Response:
    _model(request).delete_user_party(request.path_params["name"], _pid(request))
    return Response(status_code=200)


@api
async def enroll(request: Request) -> Response:
    return JSONResponse(_model(request).enroll(_pid(request), await _json(request)))


# -- other providers and inspection (test-only) -------------------------------------------------


async def _fields(request: Request, *names: str) -> list[Any]:
    body = await _json(request)
    if not isinstance(body, dict):
        raise SandboxError(400, f"the body must be an object with {', '.join(names)}")
    return [body.get(name) for name in names]


@sandbox
async def provider_action(request: Request) -> Response:
    model, name, action = _model(request), request.path_params["name"], request.path_params["action"]
    if action == "parties":
        (pid,) = await _fields(request, "partyId")
        model.provider_register(name, pid)
        return JSONResponse({"partyId": party_id(pid), "owner": name}, 201)
    if action == "prepare":
        (pid,) = await _fields(request, "partyId")
        return JSONResponse({"migrationKey": model.provider_prepare(name, pid)})
    if action == "handoff":
        pid, key = await _fields(request, "partyId", "migrationKey")
        model.provider_handoff(name, pid, key)
        return JSONResponse({"accepted": True}, 202)
    if action == "migrate":
        pid, key = await _fields(request, "partyId", "migrationKey")
        model.provider_migrate(name, pid, key)
        return JSONResponse({"partyId": party_id(pid), "owner": name})
    raise SandboxError(404, f"unknown provider action {action!r}")


@sandbox
async def providers(request: Request) -> Response:
    model = _model(request)
    if request.method == "POST":
        name, ap_url = await _fields(request, "name", "apUrl")
        model.add_provider(str(name or ""), str(ap_url or ""))
    with model.lock:
        urls = dict(model.providers.ap_urls)
        pending = model.providers.pending()
    listed = [{"name": n, "apUrl": u} for n, u in urls.items()]
    return JSONResponse({"providers": listed, "log": model.provider_log(), "pending": pending})


@sandbox
async def faults(request: Request) -> Response:
    model, state = _model(request), request.app.state.faults
    if request.method == "POST":
        body = await _json(request)
        if not isinstance(body, dict):
            raise SandboxError(400, "the body must be an object of faults")
        ttl = body.pop("tokenTtlS", body.pop("token_ttl_s", None))
        if ttl is not None and (not isinstance(ttl, int | float) or ttl <= 0):
            raise SandboxError(400, "tokenTtlS must be a positive number")
        try:
            state.update(body)
        except ValueError as exc:
            raise SandboxError(400, str(exc)) from None
        if ttl is not None:
            model.tokens.ttl_s = float(ttl)
    return JSONResponse({**state.snapshot(), "tokenTtlS": model.tokens.ttl_s})


@sandbox
async def revoke_tokens(request: Request) -> Response:
    return JSONResponse({"revoked": _model(request).tokens.revoke_all()})


@sandbox
async def calls(request: Request) -> Response:
    since = request.query_params.get("since", "0")
    if not since.isdigit():
        raise SandboxError(400, "since must be a call sequence number")
    model, party = _model(request), request.query_params.get("partyId")
    if request.query_params.get("inFlight") in ("1", "true"):  # received, not answered yet
        return JSONResponse(model.calls_in_flight(party))
    return JSONResponse(model.calls(party, int(since)))


@sandbox
async def parties(request: Request) -> Response:
    model = _model(request)
    if request.method == "POST":
        body = await _json(request)
        if not isinstance(body, dict):
            raise SandboxError(400, "the body must be an object with partyId, owner, capabilities")
        pid, owner, caps = body.get("partyId"), body.get("owner"), body.get("capabilities")
        try:
            publication = publication_from_json(body)
        except ValueError as exc:
            raise SandboxError(400, str(exc)) from None
        if owner != "none":  # "none": registered nowhere (only a publication, e.g. a Directory card)
            model.register(str(pid), str(owner or "econnect"), caps)
        if publication is not None:
            model.publish(str(pid), publication)
        return JSONResponse(model.party(str(pid)), 201)
    return JSONResponse(model.parties())


@sandbox
async def one_party(request: Request) -> Response:
    info = _model(request).party(_pid(request))
    if info is None:
        raise SandboxError(404, f"the sandbox knows nothing of party {request.path_params['partyId']}")
    return JSONResponse(info)


@sandbox
async def show_config(request: Request) -> Response:
    return JSONResponse(_model(request).config.public())


@sandbox
async def advance_clock(request: Request) -> Response:
    """Move a ``ManualClock`` (only that) forward: ``{"seconds": n}``."""
    model = _model(request)
    (seconds,) = await _fields(request, "seconds")
    advance = getattr(model.clock, "advance", None)
    if advance is None:
        raise SandboxError(400, "the sandbox runs on the system clock; only a ManualClock can be advanced")
    if not isinstance(seconds, int | float) or seconds < 0:
        raise SandboxError(400, "seconds must be a number >= 0")
    advance(float(seconds))
    model.apply_due_events()
    return JSONResponse({"now": model.clock.now().isoformat()})


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        message = f"Method {request.method} is not allowed on {request.url.path}."
    else:
        message = f"No endpoint {request.method} {request.url.path} in this sandbox."
    return _error(request, SandboxError(exc.status_code, message))


def create_app(
    model: SandboxModel, config: SandboxConfig | None = None, faults_state: FaultState | None = None
) -> Starlette:
    """The ASGI app over ``model``; ``config`` sets the initial faults (default: the model's)."""
    state = faults_state or FaultState(config or model.config, model.clock.monotonic)
    party = "{partyId}"
    routes = [
        Route("/connect/token", token, methods=["POST"]),
        Route("/api/v1/peppol/deliveryOption", delivery_option, methods=["GET"]),
        Route("/api/v1/peppol/config/party", list_configs, methods=["GET"]),
        Route(f"/api/v1/peppol/config/party/{party}", get_config, methods=["GET"]),
        Route(f"/api/v1/peppol/config/party/{party}", put_config, methods=["PUT"]),
        Route(f"/api/v1/peppol/config/party/{party}", delete_config, methods=["DELETE"]),
        Route(f"/api/v1/peppol/{party}/prepareToMigrate", prepare_to_migrate, methods=["GET"]),
        Route("/api/v1/user/{name}/party", list_user_parties, methods=["GET"]),
        Route("/api/v1/user/{name}/party", put_user_party, methods=["PUT"]),
        Route(f"/api/v1/user/{{name}}/party/{party}", delete_user_party, methods=["DELETE"]),
        Route(f"/api/v1-beta/{party}/enroll", enroll, methods=["PUT"]),
        Route(f"/api/v1/{party}/hook", list_hooks, methods=["GET"]),
        Route(f"/api/v1/{party}/hook", put_hook, methods=["PUT"]),
        Route(f"/api/v1/{party}/hook/{{hookId}}", delete_hook, methods=["DELETE"]),
        Route("/sandbox/config", show_config, methods=["GET"]),
        Route("/sandbox/faults", faults, methods=["GET", "POST"]),
        Route("/sandbox/tokens/revoke", revoke_tokens, methods=["POST"]),
        Route("/sandbox/calls", calls, methods=["GET"]),
        Route("/sandbox/clock/advance", advance_clock, methods=["POST"]),
        Route("/sandbox/parties", parties, methods=["GET", "POST"]),
        Route(f"/sandbox/parties/{party}", one_party, methods=["GET"]),
        Route("/sandbox/providers", providers, methods=["GET", "POST"]),
        Route("/sandbox/providers/{name}/{action}", provider_action, methods=["POST"]),
        *smp_routes(),  # the SMPs' ServiceGroup, ServiceMetadata and business cards (smp.py)
        *directory_routes(),  # the Peppol Directory's search API (directory.py)
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultMiddleware, model=model, faults=state)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.model = model
    app.state.faults = state
    return app
