"""The console's Starlette app: the pages, the login, the JSON API under /api/v1 (docs/console.md).

``create_app(rt, settings=...)`` builds it over a ``Runtime`` (the same store, vault and settings
the CLI uses); ``serve`` runs it with uvicorn. Every route but /login and /static asks
``auth.principal`` first: anonymous API calls get 401, anonymous pages a redirect to /login.
"""

from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from migration_engine.console import auth, pages
from migration_engine.console.auth import LOGIN_CSRF_COOKIE, SESSION_COOKIE, Auth, LoginRequired
from migration_engine.engine.runtime import Runtime
from migration_engine.errors import ConfigError
from migration_engine.settings import ConsoleSettings, Settings

log = logging.getLogger("migration_engine.console")

HERE = Path(__file__).parent
API_PREFIX = "/api/v1"


def templates() -> Environment:
    """Jinja2 over the package's templates, escaping every value put into HTML."""
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env


def _api_routes() -> list[BaseRoute]:
    """The JSON API's routes (console/api.py), or none while that module does not exist."""
    try:
        from migration_engine.console import api  # type: ignore[attr-defined,unused-ignore]
    except ImportError:
        return []
    routes: list[BaseRoute] = api.routes()
    return routes


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def login_page(request: Request) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(24)
    response = pages.render(request, "login.html", csrf=token, error=None, next=request.query_params.get("next", "/"))
    response.set_cookie(
        LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", secure=_secure(request), path="/login"
    )
    return response


def _safe_next(value: Any) -> str:
    """Only a path of this site: never an absolute URL (an open redirect)."""
    text = str(value or "/")
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


async def login_submit(request: Request) -> Response:
    form = await request.form()
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    sent = str(form.get(auth.CSRF_FIELD) or "")
    if not cookie or not secrets.compare_digest(sent.encode(), cookie.encode()):
        raise HTTPException(403, "the login form's CSRF token is missing or wrong: reload the page and try again")
    the_auth: Auth = request.app.state.auth
    name, password = str(form.get("name") or ""), str(form.get("password") or "")
    account = await run_in_threadpool(the_auth.check_password, name, password)
    nxt = _safe_next(form.get("next"))
    if account is None:
        log.warning("console login refused for %r", name[:64])
        response = pages.render(request, "login.html", csrf=cookie, error="wrong name or password", next=nxt)
        response.status_code = 401
        return response
    value, _ = the_auth.new_session(account)
    log.info("console login: %s (%s)", account.name, account.role)
    redirect = RedirectResponse(nxt, status_code=303)
    redirect.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=int(the_auth.session_s),
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )
    redirect.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return redirect


async def logout(request: Request) -> Response:
    await auth.principal(request)
    auth.check_csrf(request, await request.form())
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


async def _login_required(request: Request, exc: Exception) -> Response:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if auth.is_api(request):
        code = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}
        body = {"error": {"code": code.get(exc.status_code, "http_error"), "message": exc.detail, "where": None}}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)
    response = pages.render(request, "error.html", status=exc.status_code, message=exc.detail)
    response.status_code = exc.status_code
    return response


async def _security_headers(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    )
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def create_app(rt: Runtime, *, settings: ConsoleSettings | Settings | None = None) -> Starlette:
    """The console over ``rt``. ``settings``: the console's (default: ``rt.settings.console``).
    ``ConfigError`` (exit 2 from the CLI) without a session key or users, naming the setting."""
    console = rt.settings.console if settings is None else settings
    if isinstance(console, Settings):
        console = console.console
    problem = Auth.problem(console)
    if problem:
        raise ConfigError(problem)
    routes: list[BaseRoute] = [
        Route("/login", login_page, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout, methods=["POST"]),
        *pages.routes(),
        Mount(API_PREFIX, routes=_api_routes()),
        Mount("/static", app=StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BaseHTTPMiddleware, dispatch=_security_headers)],
        exception_handlers={LoginRequired: _login_required, HTTPException: _http_error},
    )
    app.state.runtime = rt
    app.state.console = console
    app.state.auth = Auth(console, clock=rt.clock)
    app.state.templates = templates()
    app.state.last_verify = None  # the audit page's last `verify` (this process)
    return app


def run(app: Starlette, *, host: str, port: int) -> None:
    """Serve ``app`` with uvicorn until interrupted (``peppol-migrate serve``)."""
    import uvicorn

    uvicorn.run(app, host=host, port=port, proxy_headers=True, forwarded_allow_ips="127.0.0.1", log_level="info")
