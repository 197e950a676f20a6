"""The console's JSON API, mounted under /api/v1 (docs/console.md, "HTTP API").

Every endpoint asks ``auth.principal`` (401 for anonymous calls) and ``auth.require`` (403 for a
viewer acting), then calls the same use case as the CLI (``backoffice``), in a worker thread.
Reads are keyset pages (``after_id`` + ``limit``; the answer's ``next_after_id`` is the next
page's cursor, null on the last). Errors are ``{"error": {"code", "message", "where"}}``:
400 a malformed request, 401, 403, 404 no such batch or party, 409 the migration's state
refuses the action, 413 an upload too large, 422 values that do not pass the checks (an
import's problems under ``error.problems``; nothing is written), 503 a setting missing.
"""

from __future__ import annotations

import json
import logging
import re
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from migration_engine.backoffice import actions, batch_pacing, batch_report, importer, overview, plan, report_formats
from migration_engine.backoffice.batch_forecast import batch_forecast
from migration_engine.console import openapi, report_stream
from migration_engine.console.auth import Principal, check_csrf, principal, require
from migration_engine.engine.runtime import Runtime
from migration_engine.errors import (
    ActiveMigrationExists,
    ConfigError,
    ImportRejected,
    InputError,
    PeppolMigrateError,
    SecretError,
    TransitionError,
)
from migration_engine.machine import State
from migration_engine.peppol.identifiers import canonical
from migration_engine.peppol.snapshot import PartySnapshot
from migration_engine.schedule import PRIORITY_RANGE, ScheduleEdit, parse_blackouts, parse_timezone, parse_window
from migration_engine.store import ATTENTION_STATES, MigrationFilter, MigrationRecord, Page, Store

log = logging.getLogger("migration_engine.console.api")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_UPLOAD_BYTES = 100 * 1024 * 1024
MAX_PARTIES = 10_000  # a bulk action's list of parties
CLASS_SCAN = 2000  # rows a page filtered on the preflight class looks at, at most
JSONL_TYPES = ("application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/json-lines")
CSV_TYPES = ("text/csv",)


class ApiError(Exception):
    """An answer other than 2xx, in the API's error shape."""

    def __init__(self, status: int, code: str, message: str, where: str | None = None, **more: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.where, self.more = status, code, message, where, more

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message, "where": self.where, **self.more}}
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(body, status_code=self.status, headers=headers)


_HTTP_CODES = {401: "unauthenticated", 403: "forbidden", 404: "not_found", 405: "method_not_allowed"}


def _translate(exc: Exception) -> ApiError:
    """The API error for an exception of the use cases (or of auth)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):
        return ApiError(exc.status_code, _HTTP_CODES.get(exc.status_code, "http_error"), str(exc.detail))
    if isinstance(exc, ImportRejected):
        return ApiError(422, "import_rejected", str(exc), "file", problems=exc.problems)
    if isinstance(exc, TransitionError | ActiveMigrationExists):
        return ApiError(409, "conflict", str(exc))
    if isinstance(exc, ConfigError | SecretError):
        return ApiError(503, "not_configured", str(exc))
    if isinstance(exc, InputError):
        return ApiError(422, "invalid", str(exc))
    if isinstance(exc, PeppolMigrateError):
        return ApiError(500, "failed", str(exc))
    raise exc


@dataclass
class Call:
    """One API call: who makes it, the runtime, the path and query parameters, the JSON body."""

    request: Request
    who: Principal
    rt: Runtime
    body: Any = None

    @property
    def store(self) -> Store:
        return self.rt.checked_store()

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)

    def whole(self, name: str, default: int, *, low: int, high: int) -> int:
        text = self.query(name)
        if text is None or text == "":
            return default
        try:
            value = int(text)
        except ValueError:
            raise ApiError(
                400, "bad_request", f"{name} must be a whole number, not {text!r}", f"query.{name}"
            ) from None
        if not low <= value <= high:
            raise ApiError(400, "bad_request", f"{name} must be {low}..{high}, not {value}", f"query.{name}")
        return value

    def flag(self, name: str) -> bool:
        text = (self.query(name) or "false").strip().lower()
        if text not in ("true", "false", "1", "0", "yes", "no"):
            raise ApiError(400, "bad_request", f"{name} must be true or false, not {text!r}", f"query.{name}")
        return text in ("true", "1", "yes")

    def field(self, name: str, kind: type, *, required: bool = True) -> Any:
        if not isinstance(self.body, dict):
            raise ApiError(400, "bad_request", "the body must be a JSON object", "body")
        value = self.body.get(name)
        if value is None:
            if required:
                raise ApiError(400, "bad_request", f"the body has no {name!r}", f"body.{name}")
            return None
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ApiError(400, "bad_request", f"{name} must be a {kind.__name__}", f"body.{name}")
        return value


Handler = Callable[[Call], Any]


def endpoint(role: str, handler: Handler, *, body: str = "none") -> Callable[[Request], Awaitable[Response]]:
    """An async Starlette endpoint: authenticate, authorise, read the body, run ``handler`` in a
    thread; a dict or list answers as JSON, a ``Response`` as is, an error in the API's shape."""

    async def run(request: Request) -> Response:
        try:
            who = await principal(request)
            require(who, role)
            if request.method != "GET":
                check_csrf(request)  # a browser's session must send X-CSRF-Token; a bearer token needs none
            call = Call(request, who, request.app.state.runtime)
            if body == "json":
                call.body = await _json_body(request)
            elif body == "upload":
                call.body = await _upload(request)
            try:
                result = await run_in_threadpool(handler, call)
            finally:
                if body == "upload" and call.body is not None:
                    call.body.cleanup()
        except Exception as exc:
            return _translate(exc).response()
        if isinstance(result, Response):
            return result
        return JSONResponse(result)

    run.__name__ = handler.__name__
    return run


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw:
        raise ApiError(400, "bad_request", "the body is empty; send a JSON object", "body")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "bad_request", f"the body is not JSON: {exc}", "body") from None


# ---- uploads ---------------------------------------------------------------------------


@dataclass
class Upload:
    """An uploaded batch file, written to a private temporary directory while it is imported."""

    path: Path
    name: str
    folder: tempfile.TemporaryDirectory[str]

    def cleanup(self) -> None:
        self.folder.cleanup()


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _file_name(given: str | None, suffix: str) -> str:
    base = _SAFE.sub("_", Path(given or "").name).strip("._") or "upload"
    return base if Path(base).suffix.lower() in (".csv", ".jsonl", ".ndjson") else base + suffix


async def _upload(request: Request) -> Upload:
    """The batch file of an import: a multipart form's ``file`` part, or the body itself (JSON
    lines or CSV); refused (413) beyond ``MAX_UPLOAD_BYTES``."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    size = int(request.headers.get("content-length") or 0)
    if size > MAX_UPLOAD_BYTES:
        raise ApiError(413, "too_large", f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MiB", "body")
    folder = tempfile.TemporaryDirectory(prefix="pm-upload-")
    try:
        if kind == "multipart/form-data":
            async with request.form(max_files=1, max_fields=10) as form:
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise ApiError(400, "bad_request", "the form has no file part named 'file'", "body.file")
                path = Path(folder.name) / _file_name(part.filename, ".csv")
                await _copy(part, path)
        elif kind in JSONL_TYPES or kind in CSV_TYPES:
            path = Path(folder.name) / _file_name(None, ".jsonl" if kind in JSONL_TYPES else ".csv")
            written = 0
            with path.open("wb") as out:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > MAX_UPLOAD_BYTES:
                        raise ApiError(413, "too_large", f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MiB", "body")
                    out.write(chunk)
        else:
            raise ApiError(
                400,
                "bad_request",
                f"send the batch file as multipart/form-data (part 'file'), {JSONL_TYPES[0]} or text/csv, "
                f"not {kind or 'no content type'}",
                "header.content-type",
            )
    except BaseException:
        folder.cleanup()
        raise
    return Upload(path, path.name, folder)


async def _copy(part: UploadFile, path: Path) -> None:
    written = 0
    with path.open("wb") as out:
        while chunk := await part.read(1 << 20):
            written += len(chunk)
            if written > MAX_UPLOAD_BYTES:
                raise ApiError(413, "too_large", f"the upload is over {MAX_UPLOAD_BYTES // 2**20} MiB", "body.file")
            out.write(chunk)


# ---- shapes ----------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def migration_json(record: MigrationRecord) -> dict[str, Any]:
    """A migration as the API shows it (no key, only whether one is stored)."""
    out = overview.migration_dict(record)
    out["started_at"] = _iso(record.started_at)
    out["pending_action"] = record.pending.action if record.pending is not None else None
    return out


def _page_json(page: Page, items: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "items": items if items is not None else [migration_json(r) for r in page.items],
        "next_after_id": page.next_after_id,
    }


def _batch_or_404(call: Call, name: str | None = None) -> Any:
    name = call.path("batch") if name is None else name
    found = call.store.console_batch(name)
    if found is None:
        raise ApiError(404, "not_found", f"there is no batch named {name!r}", "path.batch")
    return found


def _batch_ref(call: Call, name: str | None = None) -> Any:
    """The batch (id, name) without its counts: one indexed lookup; 404 when there is none."""
    name = call.path("batch") if name is None else name
    found = call.store.batch_info(name)
    if found is None:
        raise ApiError(404, "not_found", f"there is no batch named {name!r}", "path.batch")
    return found


def _states(call: Call, name: str = "state") -> tuple[State, ...]:
    wanted = []
    for text in call.request.query_params.getlist(name):
        for part in text.split(","):
            if part.strip():
                try:
                    wanted.append(State(part.strip()))
                except ValueError:
                    known = ", ".join(s.value for s in State)
                    raise ApiError(
                        400, "bad_request", f"unknown state {part.strip()!r}; use one of {known}", f"query.{name}"
                    ) from None
    return tuple(wanted)


# ---- batches ---------------------------------------------------------------------------


def _batch_json(b: Any) -> dict[str, Any]:
    return {
        "name": b.name,
        "id": b.id,
        "created_at": _iso(b.created_at),
        "source": b.source,
        "priority": b.priority,
        "scheduled": b.scheduled,
        "total": b.total,
        "by_state": b.by_state,
    }


def list_batches(call: Call) -> dict[str, Any]:
    return {"items": [_batch_json(b) for b in call.store.console_batches()]}


def get_batch(call: Call) -> dict[str, Any]:
    b = _batch_or_404(call)
    store = call.store
    out = _batch_json(b)
    out["error_codes"] = store.console_value_counts(b.id, "last_error_code")
    out["new_providers"] = store.console_value_counts(b.id, "new_provider")
    out["current_providers"] = store.console_value_counts(b.id, "current_provider")
    return out


def batch_status(call: Call) -> dict[str, Any]:
    b = _batch_ref(call)
    data = overview.status(call.store, batch_name=b.name, now=call.rt.clock.now())
    data.pop("workers", None)  # the workers are not the batch's: GET /status has them
    return data


def status(call: Call) -> dict[str, Any]:
    name = call.query("batch")
    if name is not None:
        _batch_ref(call, name)
    return overview.status(call.store, batch_name=name, now=call.rt.clock.now())


def get_schedule(call: Call) -> dict[str, Any]:
    b = _batch_ref(call)
    scheduled = call.store.scheduled_batch(b.name)
    assert scheduled is not None
    return batch_pacing.batch_pacing(call.store, scheduled, now=call.rt.clock.now())


def _schedule_edit(call: Call) -> ScheduleEdit:
    """The body's fields as an edit of the schedule (the same checks as `batch schedule`)."""
    body = call.body
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", "the body must be a JSON object", "body")
    known = {
        "timezone",
        "windows",
        "blackouts",
        "start_at",
        "per_hour",
        "per_day",
        "max_in_flight",
        "priority",
        "clear",
    }
    unknown = sorted(set(body) - known)
    if unknown:
        raise ApiError(400, "bad_request", f"unknown field {unknown[0]!r}; use {', '.join(sorted(known))}", "body")
    fields: dict[str, Any] = {}
    try:
        if "timezone" in body:
            parse_timezone(call.field("timezone", str), where="timezone")
            fields["timezone"] = body["timezone"]
        if "windows" in body:
            windows = call.field("windows", list)
            fields["windows"] = tuple(parse_window(str(w), where="windows") for w in windows)
        if "blackouts" in body:
            fields["blackouts"] = parse_blackouts([str(d) for d in call.field("blackouts", list)], where="blackouts")
        if "start_at" in body:
            start = call.field("start_at", str, required=False)
            try:
                fields["start_at"] = None if start is None else datetime.fromisoformat(start)
            except ValueError:
                raise ApiError(
                    422, "invalid", f"start_at: {start!r} is not an ISO 8601 time", "body.start_at"
                ) from None
        for cap in ("per_hour", "per_day", "max_in_flight"):
            if cap in body:
                value = call.field(cap, int, required=False)
                if value is not None and value < 1:
                    raise ApiError(422, "invalid", f"{cap}: {value} is not a positive number", f"body.{cap}")
                fields[cap] = value
        if "priority" in body:
            low, high = PRIORITY_RANGE
            priority = call.field("priority", int)
            if not low <= priority <= high:
                raise ApiError(422, "invalid", f"priority: {priority} is not between {low} and {high}", "body.priority")
            fields["priority"] = priority
    except InputError as exc:
        raise ApiError(422, "invalid", str(exc), "body") from None
    clear = bool(call.field("clear", bool, required=False))
    if clear and fields:
        raise ApiError(422, "invalid", "clear removes the schedule: give it without other fields", "body.clear")
    edit = ScheduleEdit(clear=clear, **fields)
    if edit.empty:
        raise ApiError(422, "invalid", "nothing to set: give a schedule field or clear", "body")
    return edit


def set_schedule(call: Call) -> dict[str, Any]:
    edit = _schedule_edit(call)  # bad values: refused before the database is touched
    b = _batch_ref(call)
    store = call.store
    current = store.scheduled_batch(b.name)
    assert current is not None
    new = edit.apply(current.schedule)
    store.require_audit_key()
    change = store.set_batch_schedule(b.name, new, call.who.actor)
    shown = batch_pacing.pacing(change.batch, now=call.rt.clock.now(), counts=None, forecast=None)
    return {
        "batch": b.name,
        "changed": change.changed,
        "audited_migrations": change.audited,
        "schedule": shown["schedule"],
        "previous": None if change.previous is None else change.previous.as_dict(),
        "window": shown["window"],
    }


def get_forecast(call: Call) -> dict[str, Any]:
    b = _batch_ref(call)
    found = batch_forecast(call.store, b.name, now=call.rt.clock.now())
    return {"batch": b.name, **found.as_dict(), "line": found.summary()}


def get_chart(call: Call) -> dict[str, Any]:
    b = _batch_ref(call)
    hours = call.whole("hours", 48, low=1, high=24 * 14)
    chart = call.store.state_hours(b.id, now=call.rt.clock.now(), hours=hours)
    return {"batch": b.name, "hours": [h.isoformat() for h in chart.hours], "series": chart.series}


# ---- a batch's migrations, the queue --------------------------------------------------


def _classifier(call: Call) -> Callable[[MigrationRecord, dict[str, Any] | None], plan.PartyPlan]:
    host = call.rt.settings.verify.econnect_smp_host.strip()
    if not host:
        raise ConfigError(
            "the preflight class needs eConnect's SMP: set verify.econnect_smp_host "
            "(PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST)"
        )
    today = call.rt.clock.now().date()

    def classify(record: MigrationRecord, detail: dict[str, Any] | None) -> plan.PartyPlan:
        s = PartySnapshot.from_detail(detail) if detail else None
        return plan.classify(plan.record_row(record), s, econnect_smp=host, today=today)

    return classify


def classified_page(
    call: Call, batch_id: int, flt: MigrationFilter, *, klass: str | None, after_id: int, limit: int
) -> tuple[list[tuple[MigrationRecord, plan.PartyPlan]], int | None]:
    """A batch's migrations with their preflight plan (from the latest stored ``snapshot``
    event; none: the identifier's own checks only), keeping those of class ``klass`` if given.
    The class is not on the row, so a filtered page looks at ``CLASS_SCAN`` rows at most and
    may come back short with a cursor to go on from."""
    classify = _classifier(call)
    store = call.store
    found: list[tuple[MigrationRecord, plan.PartyPlan]] = []
    scanned, cursor = 0, after_id
    while True:
        page = store.console_batch_page(batch_id, flt=flt, after_id=cursor, limit=min(MAX_LIMIT, limit * 2))
        snaps = store.latest_snapshots([r.id for r in page.items])
        for record in page.items:
            planned = classify(record, snaps.get(record.id))
            scanned += 1
            cursor = record.id
            if klass is None or planned.klass == klass:
                found.append((record, planned))
                if len(found) == limit:
                    more = page.next_after_id is not None or record is not page.items[-1]
                    return found, cursor if more else None
        if page.next_after_id is None:
            return found, None
        if scanned >= CLASS_SCAN:
            return found, cursor


def batch_migrations(call: Call) -> dict[str, Any]:
    b = _batch_ref(call)
    flt = MigrationFilter(
        states=_states(call),
        error_code=call.query("error_code") or None,
        new_provider=call.query("new_provider") or None,
        current_provider=call.query("current_provider") or None,
    )
    after_id = call.whole("after_id", 0, low=0, high=2**62)
    limit = call.whole("limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    klass = call.query("plan_class") or None
    if klass is not None:
        from migration_engine.backoffice.plan_classes import CLASSES

        if klass not in CLASSES:
            known = ", ".join(CLASSES)
            raise ApiError(400, "bad_request", f"unknown plan_class {klass!r}; use one of {known}", "query.plan_class")
        rows, cursor = classified_page(call, b.id, flt, klass=klass, after_id=after_id, limit=limit)
        items = [{**migration_json(r), "plan_class": p.klass} for r, p in rows]
        return {"items": items, "next_after_id": cursor}
    return _page_json(call.store.console_batch_page(b.id, flt=flt, after_id=after_id, limit=limit))


def attention(call: Call) -> dict[str, Any]:
    states = _states(call) or ATTENTION_STATES
    batch_id = None
    if call.query("batch"):
        batch_id = _batch_ref(call, call.query("batch")).id
    page = call.store.console_attention_page(
        states=states,
        batch_id=batch_id,
        after_id=call.whole("after_id", 0, low=0, high=2**62),
        limit=call.whole("limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT),
    )
    return {**_page_json(page), "counts": call.store.console_attention_counts()}


def get_plan(call: Call) -> dict[str, Any]:
    b = _batch_ref(call)
    after_id = call.whole("after_id", 0, low=0, high=2**62)
    limit = call.whole("limit", DEFAULT_LIMIT, low=1, high=MAX_LIMIT)
    rows, cursor = classified_page(call, b.id, MigrationFilter(), klass=None, after_id=after_id, limit=limit)
    return {
        "batch": b.name,
        "items": [{**p.as_dict(), "migration_id": r.id, "state": r.state.value} for r, p in rows],
        "next_after_id": cursor,
    }


# ---- a party ---------------------------------------------------------------------------


def _party(call: Call) -> str:
    text = call.path("party")
    try:
        return canonical(text)
    except (InputError, ValueError) as exc:
        raise ApiError(400, "bad_request", f"{text!r} is not a party identifier: {exc}", "path.party") from None


def get_party(call: Call) -> dict[str, Any]:
    party_id = _party(call)
    found = overview.show(call.store, party_id)
    if not found:
        raise ApiError(404, "not_found", f"party {party_id} has no migration", "path.party")
    return {"party_id": party_id, "migrations": found}


def _open_or_404(call: Call, party_id: str, action: str) -> MigrationRecord:
    if not call.store.find_party(party_id):
        raise ApiError(404, "not_found", f"party {party_id} has no migration", "path.party")
    return actions.active_migration(call.store, party_id, action=action)


def _action(call: Call) -> str:
    action = call.field("action", str)
    if action not in actions.ACTIONS:
        raise ApiError(
            400, "bad_request", f"unknown action {action!r}; use one of {', '.join(actions.ACTIONS)}", "body.action"
        )
    return str(action)


def party_action(call: Call) -> dict[str, Any]:
    action = _action(call)
    party_id = _party(call)
    record = _open_or_404(call, party_id, action)
    done = actions.operator_action(call.store, call.rt.settings, record=record, action=action, actor=call.who.actor)
    return {"requested": actions.requested(done, action), "migration": migration_json(done)}


def party_key(call: Call) -> dict[str, Any]:
    key = call.field("key", str)
    party_id = _party(call)
    _open_or_404(call, party_id, "set a key")
    done = actions.key_set(call.store, call.rt.vault(), call.rt.settings, party=party_id, key=key, actor=call.who.actor)
    return {"requested": actions.requested(done, "key set"), "migration": migration_json(done)}


def bulk_action(call: Call) -> dict[str, Any]:
    action = _action(call)
    batch = call.field("batch", str, required=False)
    parties = call.field("parties", list, required=False)
    if (batch is None) == (parties is None):
        raise ApiError(400, "bad_request", "give either batch or parties (a list of party ids)", "body")
    if parties is not None:
        if not parties or len(parties) > MAX_PARTIES or not all(isinstance(p, str) for p in parties):
            raise ApiError(400, "bad_request", f"parties must be 1..{MAX_PARTIES} party ids (strings)", "body.parties")
        results = [_one_of_many(call, str(p), action) for p in parties]
    else:
        _batch_ref(call, str(batch))
        results = [
            {"party_id": r.party_id, "migration_id": r.migration_id, "ok": r.ok, "message": r.message, "state": r.state}
            for r in actions.act_on_batch(
                call.store, call.rt.settings, batch_name=str(batch), action=action, actor=call.who.actor
            )
        ]
    done = sum(1 for r in results if r["ok"])
    return {"action": action, "done": done, "refused": len(results) - done, "results": results}


def _one_of_many(call: Call, party: str, action: str) -> dict[str, Any]:
    """One party of a bulk action: refusals are reported, not raised."""
    try:
        party_id = canonical(party)
        record = actions.active_migration(call.store, party_id, action=action)
        done = actions.operator_action(call.store, call.rt.settings, record=record, action=action, actor=call.who.actor)
    except (InputError, TransitionError, ValueError) as exc:
        return {"party_id": party, "migration_id": None, "ok": False, "message": str(exc), "state": None}
    message = f"{action} {actions.REQUESTED}" if actions.requested(done, action) else f"{action} done"
    return {
        "party_id": done.party_id,
        "migration_id": done.id,
        "ok": True,
        "message": message,
        "state": done.state.value,
    }


# ---- import, reports -------------------------------------------------------------------


def import_batch(call: Call) -> dict[str, Any]:
    upload: Upload = call.body
    batch = call.query("batch")
    if batch is not None and not batch.strip():
        raise ApiError(400, "bad_request", "batch must not be empty", "query.batch")
    dry_run = call.flag("dry_run")
    try:
        result = importer.import_file(
            call.rt, path=upload.path, batch_name=batch or Path(upload.name).stem, dry_run=dry_run, actor=call.who.actor
        )
    except ImportRejected as exc:
        # the file's temporary path means nothing to the caller: name the upload instead
        message = str(exc).replace(str(upload.path), upload.name)
        raise ApiError(422, "import_rejected", message, "file", problems=exc.problems) from None
    except InputError as exc:
        raise ApiError(422, "invalid", str(exc).replace(str(upload.path), upload.name), "file") from None
    result["file"] = upload.name
    return result


REPORT_TYPES = {"json": "application/json", "csv": "text/csv; charset=utf-8", "html": "text/html; charset=utf-8"}


def get_report(call: Call) -> Response:
    b = _batch_ref(call)
    fmt = call.query("format") or "json"
    if fmt not in REPORT_TYPES:
        raise ApiError(
            400, "bad_request", f"unknown format {fmt!r}; use one of {', '.join(REPORT_TYPES)}", "query.format"
        )
    # the summary now (its errors answer as errors); the rows are streamed, a page at a time
    rep = batch_report.build(call.store, batch_name=b.name, now=call.rt.clock.now())
    headers = {"Content-Disposition": f'attachment; filename="report-{_SAFE.sub("_", b.name)}.{fmt}"'}
    body = report_stream.stream(lambda out: report_formats.write(rep, fmt, out))
    return StreamingResponse(body, media_type=REPORT_TYPES[fmt], headers=headers)


def get_openapi(call: Call) -> dict[str, Any]:
    return openapi.document()


def routes() -> list[BaseRoute]:
    """The API's routes, mounted by the app under /api/v1."""
    return [
        Route("/openapi.json", endpoint("viewer", get_openapi), methods=["GET"]),
        Route("/status", endpoint("viewer", status), methods=["GET"]),
        Route("/batches", endpoint("viewer", list_batches), methods=["GET"]),
        Route("/batches/{batch}", endpoint("viewer", get_batch), methods=["GET"]),
        Route("/batches/{batch}/status", endpoint("viewer", batch_status), methods=["GET"]),
        Route("/batches/{batch}/migrations", endpoint("viewer", batch_migrations), methods=["GET"]),
        Route("/batches/{batch}/chart", endpoint("viewer", get_chart), methods=["GET"]),
        Route("/batches/{batch}/schedule", endpoint("viewer", get_schedule), methods=["GET"]),
        Route("/batches/{batch}/schedule", endpoint("operator", set_schedule, body="json"), methods=["PUT"]),
        Route("/batches/{batch}/forecast", endpoint("viewer", get_forecast), methods=["GET"]),
        Route("/batches/{batch}/report", endpoint("viewer", get_report), methods=["GET"]),
        Route("/batches/{batch}/plan", endpoint("viewer", get_plan), methods=["GET"]),
        Route("/attention", endpoint("viewer", attention), methods=["GET"]),
        Route("/parties/{party}", endpoint("viewer", get_party), methods=["GET"]),
        Route("/parties/{party}/actions", endpoint("operator", party_action, body="json"), methods=["POST"]),
        Route("/parties/{party}/key", endpoint("operator", party_key, body="json"), methods=["POST"]),
        Route("/actions", endpoint("operator", bulk_action, body="json"), methods=["POST"]),
        Route("/imports", endpoint("operator", import_batch, body="upload"), methods=["POST"]),
    ]


__all__ = ["ApiError", "classified_page", "migration_json", "routes"]
