"""The console's pages: batches, one batch, one party, the needs-attention queue, import, audit.

Server-rendered (Jinja2, every value escaped); the pages poll ``/live.json`` every
``console.refresh_s`` for their figures (static/console.js). Reads go through the store's
console queries (keyset pages over indexes); actions through the same back-office use cases as
the CLI, with the logged-in person as the actor (``console:NAME``). Acting needs the operator
role (403 otherwise), the audit's verify and anchor need admin; every form carries the
session's CSRF token.
"""

from __future__ import annotations

import base64
import json
import logging
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from migration_engine.backoffice import actions, overview
from migration_engine.backoffice.batch_forecast import batch_forecast
from migration_engine.backoffice.batch_pacing import status_pacing
from migration_engine.backoffice.importer import import_file
from migration_engine.backoffice.plan_classes import CLASSES as PLAN_CLASSES
from migration_engine.console import auth
from migration_engine.console.api import Call, classified_page
from migration_engine.console.charts import state_chart
from migration_engine.engine.alerts import audit_verify_failed
from migration_engine.engine.runtime import Runtime
from migration_engine.errors import ConfigError, ImportRejected, PeppolMigrateError
from migration_engine.machine import State
from migration_engine.peppol.identifiers import canonical
from migration_engine.store.console_queries import ATTENTION_STATES, MigrationFilter

log = logging.getLogger("migration_engine.console.pages")

T = TypeVar("T")
FLASH_COOKIE = "pm_flash"
PAGE_SIZE = 50
MAX_UPLOAD = 50 * 1024 * 1024
IMPORT_SUFFIXES = (".csv", ".jsonl", ".json", ".ndjson", ".txt")
BULK_ACTIONS = ("retry", "cancel", "pause", "resume")


def _rt(request: Request) -> Runtime:
    rt: Runtime = request.app.state.runtime
    return rt


async def blocking(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a store call off the event loop."""
    return await run_in_threadpool(fn, *args, **kwargs)


# ---- rendering -----------------------------------------------------------------------------


def _read_flash(request: Request) -> list[dict[str, Any]]:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return []
    try:
        data = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except ValueError:
        return []
    return [m for m in data if isinstance(m, dict)] if isinstance(data, list) else []


def render(request: Request, template: str, **context: Any) -> HTMLResponse:
    """``template`` with the page's common context (who, the CSRF token, the refresh period)."""
    env = request.app.state.templates
    who: auth.Principal | None = request.scope.get("console.principal")
    flashes = _read_flash(request)
    html = env.get_template(template).render(
        who=who,
        csrf=who.csrf if who is not None else context.pop("csrf", ""),
        refresh_s=request.app.state.console.refresh_s,
        flashes=flashes,
        path=request.url.path,
        **context,
    )
    response = HTMLResponse(html)
    if flashes:
        response.delete_cookie(FLASH_COOKIE)
    return response


def _back(to: str, messages: list[dict[str, Any]]) -> RedirectResponse:
    """Post/redirect/get: back to ``to`` with ``messages`` shown once there."""
    response = RedirectResponse(_local(to), status_code=303)
    text = json.dumps(messages[:200], ensure_ascii=False).encode()
    value = base64.urlsafe_b64encode(text).decode().rstrip("=")
    response.set_cookie(FLASH_COOKIE, value[:3500], max_age=120, httponly=True, samesite="strict")
    return response


def _local(value: Any) -> str:
    text = str(value or "/")
    return text if text.startswith("/") and not text.startswith("//") and "\\" not in text else "/"


def _iso(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M:%S UTC") if at else ""


async def _acting(request: Request, role: str) -> tuple[auth.Principal, FormData]:
    """The principal of a form post, with its role and CSRF token checked (403 otherwise)."""
    who = await auth.principal(request)
    auth.require(who, role)
    form = await request.form(max_part_size=MAX_UPLOAD)
    auth.check_csrf(request, form)
    return who, form


# ---- batches -------------------------------------------------------------------------------


async def home(request: Request) -> Response:
    await auth.principal(request)
    return RedirectResponse("/batches", status_code=303)


def _batches_data(rt: Runtime) -> dict[str, Any]:
    store = rt.checked_store()
    now = rt.clock.now()
    pacing = {p["batch"]: p for p in status_pacing(store, batch_name=None, now=now)}
    rows = []
    for b in store.console_batches():
        done = sum(b.by_state.get(s.value, 0) for s in (State.COMPLETED, State.CANCELLED))
        forecast = pacing.get(b.name, {}).get("forecast")
        if forecast is None and not b.scheduled:
            try:
                forecast = {"line": batch_forecast(store, b.name, now=now).summary()}
            except PeppolMigrateError:
                forecast = None
        rows.append(
            {
                "name": b.name,
                "created_at": _iso(b.created_at),
                "total": b.total,
                "done": done,
                "completed": b.by_state.get(State.COMPLETED.value, 0),
                "attention": sum(b.by_state.get(s.value, 0) for s in ATTENTION_STATES),
                "percent": round(100.0 * done / b.total, 1) if b.total else 100.0,
                "schedule": pacing.get(b.name, {}).get("line") or ("scheduled" if b.scheduled else "no schedule"),
                "forecast": (forecast or {}).get("line", ""),
            }
        )
    return {"batches": rows}


async def batches(request: Request) -> Response:
    await auth.principal(request)
    data = await blocking(_batches_data, _rt(request))
    return render(request, "batches.html", live_url="/live.json", **data)


def _filter_from(params: Any) -> tuple[MigrationFilter, dict[str, str]]:
    keys = ("state", "error_code", "provider", "current_provider", "plan_class")
    chosen = {k: str(params.get(k) or "").strip() for k in keys}
    state = chosen["state"]
    if state and state not in {s.value for s in State}:
        raise HTTPException(400, f"state {state!r} is not a state; use one of {', '.join(s.value for s in State)}")
    klass = chosen["plan_class"]  # not on the row: the page is classified as it is read (_classified)
    if klass and klass not in PLAN_CLASSES:
        raise HTTPException(400, f"plan_class {klass!r} is not a preflight class; use one of {', '.join(PLAN_CLASSES)}")
    flt = MigrationFilter(
        states=(State(state),) if state else (),
        error_code=chosen["error_code"] or None,
        new_provider=chosen["provider"] or None,
        current_provider=chosen["current_provider"] or None,
    )
    return flt, chosen


def _after(params: Any) -> int:
    raw = str(params.get("after") or "0")
    if not raw.isdigit():
        raise HTTPException(400, "after must be a migration id (a whole number)")
    return int(raw)


def _classified(call: Call, batch_id: int, flt: MigrationFilter, klass: str, after: int) -> dict[str, Any]:
    """The batch's rows of preflight class ``klass``, as the API's ``plan_class`` filter finds them."""
    try:
        rows, cursor = classified_page(call, batch_id, flt, klass=klass, after_id=after, limit=PAGE_SIZE)
    except ConfigError as exc:
        raise HTTPException(503, str(exc)) from None
    return {"page": [{**overview.migration_dict(r), "plan_class": p.klass} for r, p in rows], "next_after": cursor}


def _batch_data(rt: Runtime, name: str, flt: MigrationFilter, after: int) -> dict[str, Any] | None:
    store = rt.checked_store()
    batch = store.console_batch(name)
    if batch is None:
        return None
    now = rt.clock.now()
    page = store.console_batch_page(batch.id, flt=flt, after_id=after, limit=PAGE_SIZE)
    hours = store.state_hours(batch.id, now=now, hours=48)
    pacing = next(iter(status_pacing(store, batch_name=name, now=now)), None)
    try:
        forecast = batch_forecast(store, name, now=now).summary()
    except PeppolMigrateError as exc:
        forecast = str(exc)
    return {
        "batch": batch,
        "by_state": batch.by_state,
        "total": batch.total,
        "page": [overview.migration_dict(r) for r in page.items],
        "next_after": page.next_after_id,
        "chart": state_chart(hours.hours, hours.series),
        "error_codes": store.console_value_counts(batch.id, "last_error_code"),
        "providers": store.console_value_counts(batch.id, "new_provider"),
        "current_providers": store.console_value_counts(batch.id, "current_provider"),
        "pacing": pacing,
        "forecast": forecast,
    }


async def batch(request: Request) -> Response:
    who = await auth.principal(request)
    name = str(request.query_params.get("name") or "")
    flt, chosen = _filter_from(request.query_params)
    data = await blocking(_batch_data, _rt(request), name, flt, _after(request.query_params))
    if data is None:
        raise HTTPException(404, f"there is no batch named {name!r}")
    if chosen["plan_class"]:
        call = Call(request=request, who=who, rt=_rt(request))
        after = _after(request.query_params)
        data.update(await blocking(_classified, call, data["batch"].id, flt, chosen["plan_class"], after))
    from urllib.parse import urlencode

    more = {k: v for k, v in chosen.items() if v}
    next_url = None
    if data["next_after"] is not None:
        next_url = "/batch?" + urlencode({"name": name, **more, "after": data["next_after"]})
    here = "/batch?" + urlencode({"name": name, **more})
    live = "/live.json?" + urlencode({"batch": name})
    return render(
        request,
        "batch.html",
        name=name,
        chosen=chosen,
        states=[s.value for s in State],
        plan_classes=PLAN_CLASSES if _rt(request).settings.verify.econnect_smp_host.strip() else (),
        next_url=next_url,
        here=here,
        live_url=live,
        **data,
    )


def _live_data(rt: Runtime, batch_name: str | None) -> dict[str, Any]:
    store = rt.checked_store()
    out: dict[str, Any] = {}
    if batch_name:
        b = store.console_batch(batch_name)
        if b is None:
            raise HTTPException(404, f"there is no batch named {batch_name!r}")
        out["total"] = b.total
        for s in State:
            out[f"state.{s.value}"] = b.by_state.get(s.value, 0)
        return out
    for b in store.console_batches():
        done = sum(b.by_state.get(s.value, 0) for s in (State.COMPLETED, State.CANCELLED))
        out[f"batch.{b.name}.total"] = b.total
        out[f"batch.{b.name}.completed"] = b.by_state.get(State.COMPLETED.value, 0)
        out[f"batch.{b.name}.attention"] = sum(b.by_state.get(s.value, 0) for s in ATTENTION_STATES)
        out[f"batch.{b.name}.percent"] = f"{round(100.0 * done / b.total, 1) if b.total else 100.0}%"
    for state, n in store.console_attention_counts().items():
        out[f"attention.{state}"] = n
    return out


async def live(request: Request) -> Response:
    """The figures a page refreshes (polled every console.refresh_s)."""
    await auth.principal(request)
    data = await blocking(_live_data, _rt(request), request.query_params.get("batch"))
    return JSONResponse(data)


# ---- one party -----------------------------------------------------------------------------


def _party_data(rt: Runtime, party: str) -> list[dict[str, Any]]:
    store = rt.checked_store()
    found = overview.show(store, party)
    parity = store.parity_details([m["id"] for m in found]) if found else {}
    for m in found:
        m["snapshot"] = next((e["detail"] for e in reversed(m["events"]) if e["kind"] == "snapshot"), None)
        m["parity"] = parity.get(m["id"])
    return found


async def party(request: Request) -> Response:
    await auth.principal(request)
    try:
        party_id = canonical(request.path_params["party_id"])
    except PeppolMigrateError as exc:
        raise HTTPException(400, str(exc)) from None
    found = await blocking(_party_data, _rt(request), party_id)
    if not found:
        raise HTTPException(404, f"party {party_id} has no migration")
    return render(request, "party.html", party_id=party_id, migrations=found)


# ---- the needs-attention queue and the actions ---------------------------------------------


def _attention_data(rt: Runtime, after: int) -> dict[str, Any]:
    store = rt.checked_store()
    page = store.console_attention_page(after_id=after, limit=PAGE_SIZE)
    return {
        "page": [overview.migration_dict(r) for r in page.items],
        "next_after": page.next_after_id,
        "counts": store.console_attention_counts(),
    }


async def attention(request: Request) -> Response:
    await auth.principal(request)
    data = await blocking(_attention_data, _rt(request), _after(request.query_params))
    next_url = None if data["next_after"] is None else f"/attention?after={data['next_after']}"
    return render(request, "attention.html", next_url=next_url, here="/attention", live_url="/live.json", **data)


def _ids(form: FormData) -> list[int]:
    only = str(form.get("only") or "")
    raw = [only] if only else [str(v) for v in form.getlist("ids")]
    if not raw:
        raise HTTPException(400, "choose at least one party (tick its box)")
    if not all(v.isdigit() for v in raw):
        raise HTTPException(400, "ids must be migration ids (whole numbers)")
    return sorted({int(v) for v in raw})


def _act(rt: Runtime, ids: list[int], action: str, actor: str) -> list[dict[str, Any]]:
    store = rt.checked_store()
    records = store.console_records(ids)
    out = []
    for mid in ids:
        record = records.get(mid)
        if record is None:
            out.append({"ok": False, "text": f"migration {mid}: no such migration"})
            continue
        try:
            applied = actions.operator_action(store, rt.settings, record=record, action=action, actor=actor)
        except PeppolMigrateError as exc:
            out.append({"ok": False, "text": str(exc)})
            continue
        how = actions.REQUESTED if actions.requested(applied, action) else "done"
        out.append({"ok": True, "text": f"{applied.party_id}: {action} {how}, now {applied.state}"})
    return out


async def act(request: Request) -> Response:
    """retry, cancel, pause or resume the ticked migrations (or the one whose button was pressed)."""
    who, form = await _acting(request, "operator")
    # A row's own button sends only its id: that is a retry of that one party.
    action = str(form.get("action") or ("retry" if form.get("only") else ""))
    if action not in BULK_ACTIONS:
        raise HTTPException(400, f"action must be one of {', '.join(BULK_ACTIONS)}")
    ids = _ids(form)
    results = await blocking(_act, _rt(request), ids, action, who.actor)
    log.info("console: %s %s %d migration(s)", who.actor, action, len(ids))
    return _back(str(form.get("back") or "/attention"), results)


def _set_key(rt: Runtime, party_id: str, key: str, actor: str) -> dict[str, Any]:
    store = rt.checked_store()
    record = actions.key_set(store, rt.vault(), rt.settings, party=party_id, key=key, actor=actor)
    how = actions.REQUESTED if actions.requested(record, "key set") else "done"
    return {"ok": True, "text": f"{record.party_id}: key set {how}, now {record.state}"}


async def key(request: Request) -> Response:
    """Supply a new inbound key (``key set``); the key is never shown back, only masked in the audit."""
    who, form = await _acting(request, "operator")
    party_id, secret = str(form.get("party") or "").strip(), str(form.get("key") or "").strip()
    if not party_id or not secret:
        return _back(str(form.get("back") or "/attention"), [{"ok": False, "text": "give the party and its key"}])
    try:
        result = await blocking(_set_key, _rt(request), party_id, secret, who.actor)
    except PeppolMigrateError as exc:
        result = {"ok": False, "text": str(exc)}
    return _back(str(form.get("back") or "/attention"), [result])


# ---- import --------------------------------------------------------------------------------


async def import_page(request: Request) -> Response:
    who = await auth.principal(request)
    auth.require(who, "operator")
    return render(request, "import.html", result=None, problems=None, error=None)


async def _saved(upload: UploadFile, folder: Path) -> Path:
    name = Path(upload.filename or "batch.csv").name
    suffix = Path(name).suffix.lower()
    if suffix not in IMPORT_SUFFIXES:
        raise HTTPException(400, f"{name}: a batch file is CSV or JSON lines ({', '.join(IMPORT_SUFFIXES)})")
    path = folder / f"upload{suffix}"
    size = 0
    with path.open("wb") as fh:
        while chunk := await upload.read(1 << 20):
            size += len(chunk)
            if size > MAX_UPLOAD:
                raise HTTPException(413, f"{name}: larger than {MAX_UPLOAD // (1 << 20)} MiB")
            fh.write(chunk)
    return path


def _import(rt: Runtime, path: Path, batch_name: str, dry_run: bool, actor: str) -> dict[str, Any]:
    plan = import_file(rt, path=path, batch_name=batch_name, dry_run=True, actor=actor)  # nothing written on errors
    if dry_run:
        return plan
    return import_file(rt, path=path, batch_name=batch_name, dry_run=False, actor=actor)


async def import_submit(request: Request) -> Response:
    who, form = await _acting(request, "operator")
    upload = form.get("file")
    if not isinstance(upload, UploadFile) or not upload.filename:
        raise HTTPException(400, "choose a batch file to upload")
    batch_name = str(form.get("batch") or "").strip() or Path(upload.filename).stem
    dry_run = bool(form.get("dry_run"))
    with tempfile.TemporaryDirectory(prefix="peppol-migrate-upload-") as folder:
        path = await _saved(upload, Path(folder))
        try:
            result = await blocking(_import, _rt(request), path, batch_name, dry_run, who.actor)
        except ImportRejected as exc:
            response = render(request, "import.html", result=None, problems=exc.problems, error=str(exc))
            response.status_code = 400
            return response
        except PeppolMigrateError as exc:
            response = render(request, "import.html", result=None, problems=None, error=str(exc))
            response.status_code = 400
            return response
    result["file"] = upload.filename  # not the temporary path
    log.info("console: %s imported %s rows into %s (dry run: %s)", who.actor, result["rows"], batch_name, dry_run)
    return render(request, "import.html", result=result, problems=None, error=None)


# ---- the audit trail -----------------------------------------------------------------------


async def audit_page(request: Request) -> Response:
    await auth.principal(request)
    return render(request, "audit.html", last=request.app.state.last_verify)


def _verify(rt: Runtime, by: str) -> dict[str, Any]:
    store = rt.checked_store()
    store.require_audit_key()
    broken = store.verify_audit()
    if broken:  # an alert, as `audit verify` raises (engine/alerts.py): the next alerts run sends it
        first = broken[0]
        audit_verify_failed(
            store, broken=len({b.migration_id for b in broken}), at=rt.clock.now(), by=by,
            first=f"migration {first.migration_id} ({first.party_id}) at event {first.seq}",
        )  # fmt: skip
    return {
        "ok": not broken,
        "broken": [{"migration_id": b.migration_id, "party_id": b.party_id, "seq": b.seq, "reason": b.reason}
                   for b in broken[:100]],
        "broken_count": len(broken),
        "at": _iso(rt.clock.now()),
    }


async def audit_verify(request: Request) -> Response:
    """`audit verify` on demand (admin): the result is kept as the page's last verify."""
    who, _ = await _acting(request, "admin")
    try:
        result = await blocking(_verify, _rt(request), who.actor)
    except PeppolMigrateError as exc:
        return _back("/audit", [{"ok": False, "text": str(exc)}])
    result["by"] = who.name
    request.app.state.last_verify = result
    log.info("console: %s verified the audit trail: %s", who.actor, "intact" if result["ok"] else "BROKEN")
    return RedirectResponse("/audit", status_code=303)


def _anchor(rt: Runtime) -> dict[str, Any] | None:
    store = rt.checked_store()
    store.require_audit_key()
    taken, _ = store.take_audit_anchor()
    return None if taken is None else store.audit_anchor_json(taken)


async def audit_anchor(request: Request) -> Response:
    """`audit anchor` (admin): the chain heads now, HMAC'd, as a JSON download to keep off the host."""
    who, _ = await _acting(request, "admin")
    try:
        data = await blocking(_anchor, _rt(request))
    except PeppolMigrateError as exc:
        return _back("/audit", [{"ok": False, "text": str(exc)}])
    if data is None:
        return _back("/audit", [{"ok": False, "text": "no anchor taken: the audit trail does not verify"}])
    log.info("console: %s took an audit anchor", who.actor)
    name = f"audit-anchor-{_rt(request).clock.now():%Y%m%dT%H%M%SZ}.json"
    return Response(
        json.dumps(data, indent=1, ensure_ascii=False) + "\n",
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def routes() -> list[BaseRoute]:
    return [
        Route("/", home),
        Route("/batches", batches),
        Route("/batch", batch),
        Route("/live.json", live),
        Route("/party/{party_id}", party),
        Route("/attention", attention),
        Route("/actions", act, methods=["POST"]),
        Route("/key", key, methods=["POST"]),
        Route("/import", import_page, methods=["GET"]),
        Route("/import", import_submit, methods=["POST"]),
        Route("/audit", audit_page, methods=["GET"]),
        Route("/audit/verify", audit_verify, methods=["POST"]),
        Route("/audit/anchor", audit_anchor, methods=["POST"]),
    ]
