"""The OpenAPI 3.1 document of the console's JSON API (console/api.py), served at
/api/v1/openapi.json. Written by hand as data; a test checks it with openapi-spec-validator and
that every route of ``api.routes()`` is described, and nothing else."""

from __future__ import annotations

from typing import Any

from migration_engine import __version__

_STATES = [
    "requested",
    "key_issued",
    "takeover_submitted",
    "key_delivered",
    "taken_over",
    "capabilities_configured",
    "permissions_set",
    "completed",
    "key_rejected",
    "key_expired",
    "needs_attention",
    "cancelled",
]
_REF = "#/components/schemas/"
_OBJ: dict[str, Any] = {"type": "object"}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF + name}


def _q(name: str, desc: str, schema: dict[str, Any] | None = None, *, required: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": required,
        "description": desc,
        "schema": schema or {"type": "string"},
    }


def _path(name: str, desc: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": desc, "schema": {"type": "string"}}


_BATCH = _path("batch", "the batch's name")
_PARTY = _path("party", "the party's participant id (any accepted notation, e.g. 0106:12345678)")
_AFTER = _q(
    "after_id",
    "the cursor: the previous page's next_after_id (0 or absent: the first page)",
    {"type": "integer", "minimum": 0},
)
_LIMIT = _q("limit", "rows per page (1..500, default 50)", {"type": "integer", "minimum": 1, "maximum": 500})
_STATE = _q("state", "states to keep, comma-separated or repeated", {"type": "string"})


def _json(schema: dict[str, Any], desc: str = "OK") -> dict[str, Any]:
    return {"description": desc, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in (401, *codes)}


def _op(
    summary: str,
    ok: dict[str, Any],
    *,
    role: str = "viewer",
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    errors: tuple[int, ...] = (),
    op_id: str,
) -> dict[str, Any]:
    codes = (403, *errors) if role != "viewer" else errors
    out: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "description": f"Role: {role} or higher.",
        "parameters": params or [],
        "responses": {"200": ok, **_errors(*sorted(set(codes)))},
    }
    if body is not None:
        out["requestBody"] = body
    return out


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ACTION = {"type": "string", "enum": ["retry", "cancel", "pause", "resume"]}
_SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["code", "message", "where"],
                "properties": {
                    "code": {"type": "string", "examples": ["bad_request", "not_found", "conflict", "import_rejected"]},
                    "message": {"type": "string"},
                    "where": {
                        "type": ["string", "null"],
                        "description": "e.g. query.limit, body.action, path.batch, file",
                    },
                    "problems": {
                        "type": "array",
                        "items": _OBJ,
                        "description": "an import's rows: line, column, value, why",
                    },
                },
            }
        },
    },
    "Batch": {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "id": {"type": "integer"},
            "created_at": {"type": "string", "format": "date-time"},
            "source": {"type": ["string", "null"]},
            "priority": {"type": "integer"},
            "scheduled": {"type": "boolean"},
            "total": {"type": "integer"},
            "by_state": {"type": "object", "additionalProperties": {"type": "integer"}},
        },
    },
    "Migration": {
        "type": "object",
        "description": "a migration; its key never, only has_key",
        "properties": {
            "id": {"type": "integer"},
            "party_id": {"type": "string"},
            "direction": {"type": "string", "enum": ["to-econnect", "from-econnect"]},
            "state": {"type": "string", "enum": _STATES},
            "batch": {"type": ["string", "null"]},
            "has_key": {"type": "boolean"},
            "paused": {"type": "boolean"},
            "last_error_code": {"type": ["string", "null"]},
            "pending_action": {"type": ["string", "null"]},
            "plan_class": {"type": "string", "description": "only with the plan_class filter"},
        },
    },
    "Page": {
        "type": "object",
        "required": ["items", "next_after_id"],
        "properties": {
            "items": {"type": "array", "items": _ref("Migration")},
            "next_after_id": {
                "type": ["integer", "null"],
                "description": "the next page's after_id; null: the last page",
            },
        },
    },
    "ActionResult": {
        "type": "object",
        "properties": {"requested": {"type": "boolean"}, "migration": _ref("Migration")},
    },
    "BulkResult": {
        "type": "object",
        "properties": {
            "action": _ACTION,
            "done": {"type": "integer"},
            "refused": {"type": "integer"},
            "results": {"type": "array", "items": _OBJ},
        },
    },
}


def _responses() -> dict[str, Any]:
    words = {
        400: "a malformed request (a parameter or field missing or of the wrong type)",
        401: "no valid session or bearer token",
        403: "the caller's role may not do this (a viewer acting)",
        404: "no such batch or party",
        409: "the migration's state refuses the action",
        413: "the upload is too large",
        422: "values that do not pass the checks; nothing was written",
        503: "a setting the call needs is missing",
    }
    return {f"E{c}": _json(_ref("Error"), w) for c, w in words.items()}


def _paths() -> dict[str, Any]:
    page = _json(_ref("Page"))
    obj = _json(_OBJ)
    return {
        "/openapi.json": {"get": _op("this document", obj, op_id="openapi")},
        "/status": {
            "get": _op(
                "the campaign's status (the CLI's `status --json`)",
                obj,
                params=[_q("batch", "one batch only")],
                errors=(404,),
                op_id="status",
            )
        },
        "/batches": {
            "get": _op(
                "every batch, newest first, with counts per state",
                _json({"type": "object", "properties": {"items": {"type": "array", "items": _ref("Batch")}}}),
                op_id="listBatches",
            )
        },
        "/batches/{batch}": {
            "get": _op(
                "one batch: counts per state, error codes and providers with their counts",
                obj,
                params=[_BATCH],
                errors=(404,),
                op_id="getBatch",
            )
        },
        "/batches/{batch}/status": {
            "get": _op(
                "one batch's status (`status --batch`)", obj, params=[_BATCH], errors=(404,), op_id="batchStatus"
            )
        },
        "/batches/{batch}/migrations": {
            "get": _op(
                "a batch's migrations in id order, filtered, a keyset page at a time",
                page,
                params=[
                    _BATCH,
                    _STATE,
                    _q("error_code", "last_error_code equals"),
                    _q("new_provider", "new_provider equals"),
                    _q("current_provider", "current_provider equals"),
                    _q(
                        "plan_class",
                        "preflight class (from the latest stored snapshot); looks at 2000 rows a page at most, so a "
                        "page may be short with a cursor",
                    ),
                    _AFTER,
                    _LIMIT,
                ],
                errors=(400, 404, 503),
                op_id="batchMigrations",
            )
        },
        "/batches/{batch}/chart": {
            "get": _op(
                "counts per state at the end of each of the last hours",
                obj,
                params=[_BATCH, _q("hours", "1..336, default 48", {"type": "integer", "minimum": 1, "maximum": 336})],
                errors=(400, 404),
                op_id="batchChart",
            )
        },
        "/batches/{batch}/schedule": {
            "get": _op(
                "the batch's schedule, window and usage", obj, params=[_BATCH], errors=(404,), op_id="getSchedule"
            ),
            "put": _op(
                "change the batch's schedule (the fields given; clear: none), audited on its open migrations",
                obj,
                role="operator",
                params=[_BATCH],
                body=_body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "timezone": {"type": "string"},
                            "windows": {
                                "type": "array",
                                "items": {"type": "string"},
                                "examples": [["Mon-Fri 19:00-07:00"]],
                            },
                            "blackouts": {"type": "array", "items": {"type": "string", "format": "date"}},
                            "start_at": {"type": ["string", "null"]},
                            "per_hour": {"type": ["integer", "null"], "minimum": 1},
                            "per_day": {"type": ["integer", "null"], "minimum": 1},
                            "max_in_flight": {"type": ["integer", "null"], "minimum": 1},
                            "priority": {"type": "integer", "minimum": -1000, "maximum": 1000},
                            "clear": {"type": "boolean"},
                        },
                    }
                ),
                errors=(400, 404, 422, 503),
                op_id="setSchedule",
            ),
        },
        "/batches/{batch}/forecast": {
            "get": _op("when the batch will be done", obj, params=[_BATCH], errors=(404,), op_id="getForecast")
        },
        "/batches/{batch}/report": {
            "get": _op(
                "the batch's report (the CLI's `report`)",
                {
                    "description": "OK",
                    "content": {
                        "application/json": {"schema": _OBJ},
                        "text/csv": {"schema": {"type": "string"}},
                        "text/html": {"schema": {"type": "string"}},
                    },
                },
                params=[
                    _BATCH,
                    _q("format", "json (default), csv or html", {"type": "string", "enum": ["json", "csv", "html"]}),
                ],
                errors=(400, 404),
                op_id="getReport",
            )
        },
        "/batches/{batch}/plan": {
            "get": _op(
                "the batch's preflight plan from the stored snapshots (no live lookups), a keyset page at a time",
                obj,
                params=[_BATCH, _AFTER, _LIMIT],
                errors=(400, 404, 503),
                op_id="getPlan",
            )
        },
        "/attention": {
            "get": _op(
                "the needs-attention queue (needs_attention, key_rejected, key_expired) across batches",
                page,
                params=[_q("batch", "one batch only"), _STATE, _AFTER, _LIMIT],
                errors=(400, 404),
                op_id="attention",
            )
        },
        "/parties/{party}": {
            "get": _op(
                "a party's migrations, newest first, each with its audit timeline (keys masked)",
                obj,
                params=[_PARTY],
                errors=(400, 404),
                op_id="getParty",
            )
        },
        "/parties/{party}/actions": {
            "post": _op(
                "retry, cancel, pause or resume the party's open migration",
                _json(_ref("ActionResult")),
                role="operator",
                params=[_PARTY],
                body=_body({"type": "object", "required": ["action"], "properties": {"action": _ACTION}}),
                errors=(400, 404, 409),
                op_id="partyAction",
            )
        },
        "/parties/{party}/key": {
            "post": _op(
                "supply a (new) migration key for an inbound party (never echoed: masked in the audit)",
                _json(_ref("ActionResult")),
                role="operator",
                params=[_PARTY],
                body=_body({"type": "object", "required": ["key"], "properties": {"key": {"type": "string"}}}),
                errors=(400, 404, 409, 422, 503),
                op_id="partyKey",
            )
        },
        "/actions": {
            "post": _op(
                "an action on every open migration of a batch, or on a list of parties; refusals are reported",
                _json(_ref("BulkResult")),
                role="operator",
                body=_body(
                    {
                        "type": "object",
                        "required": ["action"],
                        "properties": {
                            "action": _ACTION,
                            "batch": {"type": "string"},
                            "parties": {"type": "array", "items": {"type": "string"}, "maxItems": 10000},
                        },
                    }
                ),
                errors=(400, 404),
                op_id="bulkAction",
            )
        },
        "/imports": {
            "post": _op(
                "import a batch file (the CLI's `import`): all rows or none",
                obj,
                role="operator",
                params=[
                    _q("batch", "the batch's name (default: the file's name)"),
                    _q("dry_run", "true: check only, write nothing", {"type": "boolean"}),
                ],
                body={
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "file": {"type": "string", "contentMediaType": "application/octet-stream"}
                                },
                                "required": ["file"],
                            }
                        },
                        "application/x-ndjson": {"schema": {"type": "string"}},
                        "text/csv": {"schema": {"type": "string"}},
                    },
                },
                errors=(400, 413, 422, 503),
                op_id="importBatch",
            )
        },
    }


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document (a new dict each call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "peppol-migrate console API",
            "version": __version__,
            "description": "The operations console's JSON API (docs/console.md). Every call needs a session or a "
            "bearer token; acting needs the operator role. Errors: {error: {code, message, where}}.",
        },
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {"session": []}],
        "paths": _paths(),
        "components": {
            "schemas": _SCHEMAS,
            "responses": _responses(),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "session": {"type": "apiKey", "in": "cookie", "name": "pm_session"},
            },
        },
    }
