"""The console's JSON API (console/api.py) through Starlette's TestClient, over a real store on
SQLite and PostgreSQL: every endpoint's good call, its bad input (a clear error in the API's
shape, nothing written: the database's fingerprint is unchanged), 401 anonymous, 403 a viewer
acting. No API call reaches the PSB, so no sandbox runs here."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from openapi_spec_validator import validate
from starlette.routing import Route
from starlette.testclient import TestClient

from migration_engine.clock import ManualClock
from migration_engine.console import api, openapi
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import State
from migration_engine.store import Store
from tests.support.console_api import (
    OPERATOR_TOKEN,
    VIEWER_TOKEN,
    bearer,
    console_app,
    console_runtime,
    fingerprint,
)
from tests.support.records import change, party

VIEWER = bearer(VIEWER_TOKEN)
OPERATOR = bearer(OPERATOR_TOKEN)
GOOD_KEY = "99ZZyy##99ZZyy##"
N = 6  # parties in batch "b": 0..2 inbound, 3..5 outbound


def batch_csv(parties: list[tuple[str, str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["party_id", "direction", "migration_key", "profile", "name", "new_provider"])
    for pid, direction in parties:
        new = "provider-b" if direction == "from-econnect" else ""
        writer.writerow([pid, direction, "", "default" if direction == "to-econnect" else "", f"Name {pid}", new])
    return out.getvalue().encode()


@pytest.fixture
def rt(db_url: str, clock: ManualClock) -> Iterator[Runtime]:
    runtime = console_runtime(db_url, clock)
    runtime.store.upgrade()
    yield runtime
    runtime.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(console_app(rt)) as c:
        yield c


@pytest.fixture
def store(rt: Runtime) -> Store:
    return rt.store


@pytest.fixture
def seeded(client: TestClient, store: Store) -> Store:
    """Batch b imported through the API; party 0 needs attention (error E42), party 1 key_rejected."""
    rows = [(party(i), "to-econnect" if i < 3 else "from-econnect") for i in range(N)]
    r = client.post(
        "/api/v1/imports?batch=b", content=batch_csv(rows), headers={**OPERATOR, "content-type": "text/csv"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == N
    change(
        store,
        0,
        new_state=State.NEEDS_ATTENTION,
        last_error="boom",
        last_error_code="E42",
        failed_state=State.REQUESTED,
    )
    change(store, 1, new_state=State.KEY_REJECTED, last_error_code="KEY")
    return store


def error_of(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err: dict[str, Any] = r.json()["error"]
    assert err["code"] == code and err["message"], err
    assert set(err) >= {"code", "message", "where"}
    return err


# ---- access -------------------------------------------------------------------------------

ROUTES = [(r.path, m) for r in api.routes() if isinstance(r, Route) for m in sorted(r.methods or ()) if m != "HEAD"]
OPERATOR_ROUTES = [(p, m) for p, m in ROUTES if m != "GET"]


def concrete(path: str) -> str:
    return "/api/v1" + path.replace("{batch}", "b").replace("{party}", party(0))


@pytest.mark.parametrize(("path", "method"), ROUTES)
def test_anonymous_and_bad_tokens_get_401(client: TestClient, path: str, method: str) -> None:
    for headers in ({}, bearer("not-a-token")):
        r = client.request(method, concrete(path), headers=headers, json={})
        err = error_of(r, 401, "unauthenticated")
        assert "Bearer" in err["message"]
        assert r.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(("path", "method"), OPERATOR_ROUTES)
def test_a_viewer_cannot_act(client: TestClient, seeded: Store, path: str, method: str) -> None:
    before = fingerprint(seeded)
    r = client.request(method, concrete(path), headers=VIEWER, json={"action": "retry", "key": GOOD_KEY, "clear": True})
    err = error_of(r, 403, "forbidden")
    assert "operator" in err["message"]
    assert fingerprint(seeded) == before


# ---- the OpenAPI document -------------------------------------------------------------------


def test_the_openapi_document_is_valid_and_describes_every_route(client: TestClient) -> None:
    r = client.get("/api/v1/openapi.json", headers=VIEWER)
    assert r.status_code == 200
    doc = r.json()
    validate(doc)
    described = {(p, m.upper()) for p, ops in doc["paths"].items() for m in ops}
    assert described == set(ROUTES)
    assert doc == openapi.document()


# ---- reads ------------------------------------------------------------------------------


def test_batches_list_one_status_and_unknown(client: TestClient, seeded: Store) -> None:
    items = client.get("/api/v1/batches", headers=VIEWER).json()["items"]
    assert [(b["name"], b["total"]) for b in items] == [("b", N)]
    assert items[0]["by_state"] == {"key_rejected": 1, "needs_attention": 1, "requested": N - 2}
    one = client.get("/api/v1/batches/b", headers=VIEWER).json()
    assert one["error_codes"] == {"E42": 1, "KEY": 1}
    assert one["new_providers"] == {"provider-b": 3}
    st = client.get("/api/v1/batches/b/status", headers=VIEWER).json()
    assert st["total"] == N and "workers" not in st
    assert client.get("/api/v1/status", headers=VIEWER).json()["total"] == N
    assert client.get("/api/v1/status?batch=b", headers=VIEWER).status_code == 200
    for path in ("/batches/nope", "/batches/nope/status", "/status?batch=nope", "/batches/nope/migrations"):
        err = error_of(client.get("/api/v1" + path, headers=VIEWER), 404, "not_found")
        assert "nope" in err["message"]


def test_migrations_are_filtered_and_paged_by_keyset(client: TestClient, seeded: Store) -> None:
    seen: list[str] = []
    after = 0
    while True:
        page = client.get(f"/api/v1/batches/b/migrations?limit=4&after_id={after}", headers=VIEWER).json()
        seen += [m["party_id"] for m in page["items"]]
        if page["next_after_id"] is None:
            break
        after = page["next_after_id"]
    assert seen == [party(i) for i in range(N)]
    hit = client.get("/api/v1/batches/b/migrations?state=needs_attention,key_rejected", headers=VIEWER).json()
    assert [m["party_id"] for m in hit["items"]] == [party(0), party(1)]
    assert "key_ciphertext" not in hit["items"][0] and hit["items"][0]["has_key"] is False
    code = client.get("/api/v1/batches/b/migrations?error_code=E42", headers=VIEWER).json()
    assert [m["party_id"] for m in code["items"]] == [party(0)]
    prov = client.get("/api/v1/batches/b/migrations?new_provider=provider-b", headers=VIEWER).json()
    assert [m["party_id"] for m in prov["items"]] == [party(i) for i in range(3, N)]


@pytest.mark.parametrize(
    ("query", "where"),
    [
        ("state=flying", "query.state"),
        ("limit=0", "query.limit"),
        ("limit=501", "query.limit"),
        ("after_id=x", "query.after_id"),
        ("plan_class=bogus", "query.plan_class"),
    ],
)
def test_bad_filters_are_400_naming_the_parameter(client: TestClient, seeded: Store, query: str, where: str) -> None:
    err = error_of(client.get(f"/api/v1/batches/b/migrations?{query}", headers=VIEWER), 400, "bad_request")
    assert err["where"] == where


def test_plan_class_filter_and_plan(client: TestClient, seeded: Store) -> None:
    # No snapshot stored: each party is classified on its identifier alone.
    plan = client.get("/api/v1/batches/b/plan?limit=2", headers=VIEWER).json()
    assert len(plan["items"]) == 2 and plan["next_after_id"] is not None
    klass = plan["items"][0]["class"]
    found = client.get(f"/api/v1/batches/b/migrations?plan_class={klass}", headers=VIEWER).json()
    assert found["items"] and all(m["plan_class"] == klass for m in found["items"])
    assert error_of(client.get("/api/v1/batches/b/plan?limit=x", headers=VIEWER), 400, "bad_request")


def test_plan_needs_econnects_smp(db_url: str, clock: ManualClock, seeded: Store) -> None:
    rt = console_runtime(db_url, clock, PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST="")
    with TestClient(console_app(rt)) as c:
        err = error_of(c.get("/api/v1/batches/b/plan", headers=VIEWER), 503, "not_configured")
    assert "econnect_smp_host" in err["message"]
    rt.close()


def test_attention_queue_chart_schedule_forecast(client: TestClient, seeded: Store, clock: ManualClock) -> None:
    q = client.get("/api/v1/attention", headers=VIEWER).json()
    assert [m["party_id"] for m in q["items"]] == [party(0), party(1)]
    assert q["counts"] == {"needs_attention": 1, "key_rejected": 1}
    only = client.get("/api/v1/attention?state=key_rejected&batch=b", headers=VIEWER).json()
    assert [m["party_id"] for m in only["items"]] == [party(1)]
    error_of(client.get("/api/v1/attention?batch=nope", headers=VIEWER), 404, "not_found")
    chart = client.get("/api/v1/batches/b/chart?hours=3", headers=VIEWER).json()
    assert len(chart["hours"]) == 3
    assert chart["series"]["requested"][-1] == N - 2 and chart["series"]["needs_attention"][-1] == 1
    error_of(client.get("/api/v1/batches/b/chart?hours=0", headers=VIEWER), 400, "bad_request")
    sched = client.get("/api/v1/batches/b/schedule", headers=VIEWER).json()
    assert sched["schedule"] is None
    fc = client.get("/api/v1/batches/b/forecast", headers=VIEWER).json()
    assert fc["batch"] == "b" and "line" in fc


def test_a_party_with_its_timeline(client: TestClient, seeded: Store) -> None:
    data = client.get(f"/api/v1/parties/{party(0)}", headers=VIEWER).json()
    (mig,) = data["migrations"]
    assert mig["state"] == "needs_attention"
    assert [e["kind"] for e in mig["events"]] == ["created", "transition"]
    assert mig["events"][0]["actor"] == "console:otto"  # imported through the API by otto
    error_of(client.get("/api/v1/parties/0106:99999999", headers=VIEWER), 404, "not_found")
    err = error_of(client.get("/api/v1/parties/not-a-party", headers=VIEWER), 400, "bad_request")
    assert err["where"] == "path.party"


def test_reports_in_each_format(client: TestClient, seeded: Store) -> None:
    j = client.get("/api/v1/batches/b/report", headers=VIEWER)
    assert j.status_code == 200 and j.headers["content-type"].startswith("application/json")
    assert len(json.loads(j.text)["parties"]) == N
    c = client.get("/api/v1/batches/b/report?format=csv", headers=VIEWER)
    assert c.headers["content-type"].startswith("text/csv") and len(c.text.strip().splitlines()) == N + 1
    h = client.get("/api/v1/batches/b/report?format=html", headers=VIEWER)
    assert h.headers["content-type"].startswith("text/html") and party(0) in h.text
    error_of(client.get("/api/v1/batches/b/report?format=pdf", headers=VIEWER), 400, "bad_request")


# ---- actions -----------------------------------------------------------------------------


def test_retry_one_party_audited_with_the_person(client: TestClient, seeded: Store) -> None:
    r = client.post(f"/api/v1/parties/{party(0)}/actions", headers=OPERATOR, json={"action": "retry"})
    assert r.status_code == 200, r.text
    assert r.json()["migration"]["state"] == "requested"
    events = seeded.events(seeded.find_party(party(0))[0].id)
    assert events[-1].actor == "console:otto" and events[-1].to_state is State.REQUESTED
    # retry again: the state refuses it (409), nothing written
    before = fingerprint(seeded)
    err = error_of(
        client.post(f"/api/v1/parties/{party(0)}/actions", headers=OPERATOR, json={"action": "retry"}), 409, "conflict"
    )
    assert "needs_attention" in err["message"]
    assert fingerprint(seeded) == before


@pytest.mark.parametrize(
    ("body", "where"),
    [
        (None, "body"),
        ("not json", "body"),
        ({}, "body.action"),
        ({"action": "explode"}, "body.action"),
        ({"action": 3}, "body.action"),
    ],
)
def test_bad_action_bodies_write_nothing(client: TestClient, seeded: Store, body: Any, where: str) -> None:
    before = fingerprint(seeded)
    content = b"" if body is None else (body.encode() if isinstance(body, str) else json.dumps(body).encode())
    r = client.post(
        f"/api/v1/parties/{party(0)}/actions", headers={**OPERATOR, "content-type": "application/json"}, content=content
    )
    assert error_of(r, 400, "bad_request")["where"] == where
    assert fingerprint(seeded) == before


def test_action_on_an_unknown_party_is_404(client: TestClient, seeded: Store) -> None:
    err = error_of(
        client.post("/api/v1/parties/0106:99999999/actions", headers=OPERATOR, json={"action": "pause"}),
        404,
        "not_found",
    )
    assert "0106:99999999" in err["message"]


def test_bulk_actions_by_list_and_by_batch(client: TestClient, seeded: Store) -> None:
    r = client.post(
        "/api/v1/actions", headers=OPERATOR, json={"action": "retry", "parties": [party(0), party(2), "junk"]}
    )
    data = r.json()
    assert r.status_code == 200 and data["done"] == 1 and data["refused"] == 2
    assert [x["ok"] for x in data["results"]] == [True, False, False]
    r = client.post("/api/v1/actions", headers=OPERATOR, json={"action": "pause", "batch": "b"})
    assert r.json()["done"] == N
    assert all(m.paused for m in seeded.list_migrations(batch_name="b"))
    before = fingerprint(seeded)
    for body, status, where in [
        ({"action": "pause"}, 400, "body"),
        ({"action": "pause", "batch": "b", "parties": [party(0)]}, 400, "body"),
        ({"action": "pause", "parties": []}, 400, "body.parties"),
        ({"action": "pause", "parties": [1]}, 400, "body.parties"),
        ({"action": "pause", "batch": "nope"}, 404, "path.batch"),
    ]:
        r = client.post("/api/v1/actions", headers=OPERATOR, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["where"] == where
    assert fingerprint(seeded) == before


def test_key_set_masks_the_key(client: TestClient, seeded: Store) -> None:
    r = client.post(f"/api/v1/parties/{party(1)}/key", headers=OPERATOR, json={"key": GOOD_KEY})
    assert r.status_code == 200, r.text
    assert r.json()["migration"]["state"] == "key_issued" and GOOD_KEY not in r.text
    events = seeded.events(seeded.find_party(party(1))[0].id)
    assert events[-1].actor == "console:otto" and GOOD_KEY not in json.dumps(dict(events[-1].detail))
    before = fingerprint(seeded)
    err = error_of(
        client.post(f"/api/v1/parties/{party(2)}/key", headers=OPERATOR, json={"key": "short"}), 422, "invalid"
    )
    assert "short" not in err["message"]
    error_of(client.post(f"/api/v1/parties/{party(2)}/key", headers=OPERATOR, json={"key": 5}), 400, "bad_request")
    err = error_of(
        client.post(f"/api/v1/parties/{party(4)}/key", headers=OPERATOR, json={"key": GOOD_KEY}), 409, "conflict"
    )
    assert "from eConnect" in err["message"]
    assert fingerprint(seeded) == before


def test_schedule_set_and_refused(client: TestClient, seeded: Store) -> None:
    before = fingerprint(seeded)
    for body, status, where in [
        ({"per_hour": 0}, 422, "body.per_hour"),
        ({"timezone": "Mars/Olympus"}, 422, "body"),
        ({"windows": ["whenever"]}, 422, "body"),
        ({"priority": 5000}, 422, "body.priority"),
        ({"colour": "red"}, 400, "body"),
        ({}, 422, "body"),
        ({"clear": True, "per_hour": 5}, 422, "body.clear"),
    ]:
        r = client.put("/api/v1/batches/b/schedule", headers=OPERATOR, json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["error"]["where"] == where
    assert fingerprint(seeded) == before
    error_of(client.put("/api/v1/batches/nope/schedule", headers=OPERATOR, json={"per_hour": 5}), 404, "not_found")
    r = client.put("/api/v1/batches/b/schedule", headers=OPERATOR, json={"per_hour": 5, "timezone": "Europe/Amsterdam"})
    assert r.status_code == 200, r.text
    assert r.json()["changed"] is True and r.json()["schedule"]["per_hour"] == 5
    assert client.get("/api/v1/batches/b/schedule", headers=VIEWER).json()["schedule"]["per_hour"] == 5


# ---- import ------------------------------------------------------------------------------


def test_import_multipart_dry_run_and_for_real(client: TestClient, store: Store) -> None:
    data = batch_csv([(party(i), "to-econnect") for i in range(3)])
    files = {"file": ("wave1.csv", data, "text/csv")}
    dry = client.post("/api/v1/imports?dry_run=true", headers=OPERATOR, files=files)
    assert dry.status_code == 200, dry.text
    assert dry.json()["dry_run"] is True and dry.json()["batch"] == "wave1" and dry.json()["rows"] == 3
    assert store.console_batches() == []
    real = client.post("/api/v1/imports", headers=OPERATOR, files=files)
    assert real.json()["imported"] == 3 and real.json()["file"] == "wave1.csv"
    again = client.post("/api/v1/imports?batch=wave2", headers=OPERATOR, files=files)
    err = error_of(again, 422, "import_rejected")
    assert len(err["problems"]) == 3 and "already" in json.dumps(err["problems"])


def test_import_json_lines_body(client: TestClient, store: Store) -> None:
    body = "\n".join(
        json.dumps({"party_id": party(i), "direction": "from-econnect", "new_provider": "provider-b"}) for i in range(2)
    )
    r = client.post(
        "/api/v1/imports?batch=jl", headers={**OPERATOR, "content-type": "application/x-ndjson"}, content=body
    )
    assert r.status_code == 200, r.text
    assert r.json()["imported"] == 2


def test_bad_imports_write_nothing(client: TestClient, seeded: Store) -> None:
    before = fingerprint(seeded)
    bad = batch_csv([(party(10), "to-econnect"), ("0106:nonsense", "to-econnect"), (party(11), "sideways")])
    r = client.post("/api/v1/imports?batch=bad", headers={**OPERATOR, "content-type": "text/csv"}, content=bad)
    err = error_of(r, 422, "import_rejected")
    assert err["where"] == "file" and {p["line"] for p in err["problems"]} == {3, 4}
    assert "/tmp" not in err["message"] and "pm-upload" not in err["message"]
    for headers, content, where in [
        ({"content-type": "application/pdf"}, b"%PDF", "header.content-type"),
        ({}, b"", "header.content-type"),
    ]:
        r = client.post("/api/v1/imports", headers={**OPERATOR, **headers}, content=content)
        assert error_of(r, 400, "bad_request")["where"] == where
    r = client.post("/api/v1/imports", headers=OPERATOR, files={"other": ("x.csv", b"a", "text/csv")})
    assert error_of(r, 400, "bad_request")["where"] == "body.file"
    error_of(
        client.post("/api/v1/imports?batch=", headers={**OPERATOR, "content-type": "text/csv"}, content=b"x"),
        400,
        "bad_request",
    )
    error_of(
        client.post("/api/v1/imports?dry_run=maybe", headers={**OPERATOR, "content-type": "text/csv"}, content=bad),
        400,
        "bad_request",
    )
    assert fingerprint(seeded) == before
    assert [b.name for b in seeded.console_batches()] == ["b"]
