"""PsbClient's endpoints: paths, encoding, bodies, answers; recording views."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import (
    ConfigError,
    PsbAuthError,
    PsbNotFound,
    PsbPermanentError,
    PsbTransientError,
)
from migration_engine.psb.client import ApiCall, PsbClient

KEY = "Ab12@#cdEF34$%xy"
Handler = Callable[[httpx.Request], httpx.Response]


class FakePsb:
    """Answers requests to any host from a table of (method, raw path) -> answer; records them."""

    def __init__(self, routes: dict[tuple[str, str], httpx.Response | Handler] | None = None) -> None:
        self.routes = routes or {}
        self.requests: list[httpx.Request] = []
        self.tokens = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            self.tokens += 1
            return httpx.Response(200, json={"access_token": f"tok-{self.tokens}", "expires_in": 3600})
        self.requests.append(request)
        route = self.routes.get((request.method, request.url.raw_path.decode().split("?")[0]))
        if route is None:
            return httpx.Response(418, json={"code": "TEST", "message": "no route in the fake"})
        return route(request) if callable(route) else route

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def make(fake: FakePsb, clock: ManualClock | None = None, **kwargs: Any) -> PsbClient:
    return PsbClient(
        base_url="https://psb.example/",
        identity_url="https://identity.example/",
        client_id="my-client",
        client_secret="client-secret-xyz",
        transport=httpx.MockTransport(fake),
        clock=clock or ManualClock(),
        **kwargs,
    )


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


# -- Peppol migration and configuration ----------------------------------------------------


def test_prepare_to_migrate_percent_encodes_the_party_id() -> None:
    fake = FakePsb({("GET", "/api/v1/peppol/0106%3A123/prepareToMigrate"): httpx.Response(
        200, json={"migrationKey": KEY})})
    assert make(fake).prepare_to_migrate("0106:123") == KEY
    assert str(fake.last.url) == "https://psb.example/api/v1/peppol/0106%3A123/prepareToMigrate"


def test_get_party_config() -> None:
    config = {"id": "0106:123", "capabilities": {"invoices": {"state": "on"}}}
    fake = FakePsb({("GET", "/api/v1/peppol/config/party/0106%3A123"): httpx.Response(200, json=config)})
    assert make(fake).get_party_config("0106:123") == config


def test_a_cookie_the_psb_sets_is_never_sent_back() -> None:
    path = "/api/v1/peppol/config/party/0106%3A123"
    answer = httpx.Response(200, json={"id": "0106:123"}, headers={"Set-Cookie": "session=abc; Path=/"})
    fake = FakePsb({("GET", path): answer})
    client = make(fake)
    client.get_party_config("0106:123")
    client.get_party_config("0106:123")
    assert [r.headers.get("cookie") for r in fake.requests] == [None, None]


def test_get_party_config_404_is_none_but_recorded() -> None:
    calls: list[ApiCall] = []
    fake = FakePsb({("GET", "/api/v1/peppol/config/party/0106%3A9"): httpx.Response(
        404, json={"code": "API404", "message": "Party not found", "requestId": "r1"})})
    assert make(fake).recording(calls.append).get_party_config("0106:9") is None
    assert (calls[-1].status, calls[-1].error_code, calls[-1].request_id) == (404, "API404", "r1")


def test_put_party_config_sends_json_and_returns_the_echo() -> None:
    config = {"capabilities": {"invoices": {"state": "on"}}}
    fake = FakePsb({("PUT", "/api/v1/peppol/config/party/0106%3A123"): lambda r: httpx.Response(
        200, json=body(r) | {"id": "1"})})
    assert make(fake).put_party_config("0106:123", config) == config | {"id": "1"}
    assert fake.last.headers["content-type"] == "application/json"
    assert body(fake.last) == config


def test_put_with_an_empty_answer_returns_an_empty_dict() -> None:
    fake = FakePsb({("PUT", "/api/v1/peppol/config/party/0106%3A123"): httpx.Response(204)})
    assert make(fake).put_party_config("0106:123", {}) == {}


def test_put_with_a_list_answer_is_body01() -> None:
    fake = FakePsb({("PUT", "/api/v1/0106%3A1/hook"): httpx.Response(200, json=[1, 2])})
    with pytest.raises(PsbPermanentError) as caught:
        make(fake).put_hook("0106:1", {"name": "h"})
    assert caught.value.code == "PSB200.BODY01"


def test_submit_migration_key() -> None:
    fake = FakePsb({("PUT", "/api/v1/peppol/config/party/0106%3A123"): httpx.Response(200, json={"id": "1"})})
    assert make(fake).submit_migration_key("0106:123", KEY) == {"id": "1"}
    assert body(fake.last) == {"migration": {"key": KEY}}


@pytest.mark.parametrize("status", [200, 204, 404])
def test_delete_party_config_404_counts_as_done(status: int) -> None:
    fake = FakePsb({("DELETE", "/api/v1/peppol/config/party/0106%3A123"): httpx.Response(status)})
    make(fake).delete_party_config("0106:123")
    assert fake.last.method == "DELETE"


def test_delete_still_raises_other_errors() -> None:
    fake = FakePsb({("DELETE", "/api/v1/peppol/config/party/0106%3A123"): httpx.Response(
        403, json={"code": "API403", "message": "Access forbidden."})})
    with pytest.raises(PsbAuthError):
        make(fake).delete_party_config("0106:123")


def test_delivery_options_query() -> None:
    option = {"partyId": "0106:1", "url": "https://accp-ap.econnect.eu/as4/v1", "protocol": "As4"}
    fake = FakePsb({("GET", "/api/v1/peppol/deliveryOption"): httpx.Response(200, json=[option])})
    got = make(fake).delivery_options(
        ["0106:1", "9944:NL1"], document_type_ids=["urn:a", "urn:b"], document_family="Invoice"
    )
    assert got == [option]
    assert fake.last.url.query.decode() == (
        "partyIds=0106%3A1&partyIds=9944%3ANL1&documentTypeIds=urn%3Aa&documentTypeIds=urn%3Ab"
        "&documentFamily=Invoice"
    )


def test_delivery_options_empty_and_paged_answers() -> None:
    paged = httpx.Response(200, json={"items": [{"a": 1}]})
    fake = FakePsb({("GET", "/api/v1/peppol/deliveryOption"): paged})
    client = make(fake)
    assert client.delivery_options(["0106:1"]) == [{"a": 1}]
    assert fake.last.url.query.decode() == "partyIds=0106%3A1"
    assert client.delivery_options([]) == []
    assert len(fake.requests) == 1  # no call for no parties
    fake.routes[("GET", "/api/v1/peppol/deliveryOption")] = httpx.Response(200, json=[])
    assert client.delivery_options(["0106:1"]) == []


# -- hooks, users, enrollment --------------------------------------------------------------


def test_hooks() -> None:
    hook = {"name": "mail", "action": "mailto:ops@example.com", "topics": ["InvoiceReceived"]}
    fake = FakePsb({
        ("GET", "/api/v1/0106%3A123/hook"): httpx.Response(200, json=[hook | {"id": "h1"}]),
        ("PUT", "/api/v1/0106%3A123/hook"): httpx.Response(200, json=hook | {"id": "h1"}),
        ("DELETE", "/api/v1/0106%3A123/hook/h%2F1"): httpx.Response(404),
    })
    client = make(fake)
    assert client.get_hooks("0106:123") == [hook | {"id": "h1"}]
    assert client.put_hook("0106:123", hook) == hook | {"id": "h1"}
    assert body(fake.last) == hook
    client.delete_hook("0106:123", "h/1")
    assert fake.last.url.raw_path == b"/api/v1/0106%3A123/hook/h%2F1"


def test_user_parties() -> None:
    grant = {"id": "0106:123", "name": "Acme", "permissions": {"canSendDocument": True}}
    calls: list[ApiCall] = []
    fake = FakePsb({
        ("GET", "/api/v1/user/ann%40example.com/party"): httpx.Response(200, json=[grant]),
        ("PUT", "/api/v1/user/ann%40example.com/party"): httpx.Response(200, json=grant),
        ("DELETE", "/api/v1/user/ann%40example.com/party/0106%3A123"): httpx.Response(200),
    })
    client = make(fake).recording(calls.append)
    assert client.get_user_parties("ann@example.com") == [grant]
    assert client.put_user_party("ann@example.com", grant) == grant
    assert body(fake.last) == grant
    client.delete_user_party("ann@example.com", "0106:123")
    assert [c.party_id for c in calls if c.path.startswith("/api")] == [None, "0106:123", "0106:123"]


def test_enroll() -> None:
    enrollment = {"services": {"peppol": {"capabilities": {"invoices": "on"}}}}
    fake = FakePsb({("PUT", "/api/v1-beta/0106%3A123/enroll"): httpx.Response(200, json=enrollment)})
    assert make(fake).enroll("0106:123", enrollment) == enrollment
    assert body(fake.last) == enrollment


# -- recording views -------------------------------------------------------------------------


def test_recording_sink_gets_every_call_including_failures() -> None:
    def boom(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    clock = ManualClock()

    def slow(request: httpx.Request) -> httpx.Response:
        clock.advance(0.25)
        return httpx.Response(200, json={"migrationKey": KEY}, headers={"X-Request-Id": "ok-1"})

    fake = FakePsb({
        ("GET", "/api/v1/peppol/0106%3A1/prepareToMigrate"): slow,
        ("GET", "/api/v1/0106%3A2/hook"): httpx.Response(500, json={"code": "API500", "message": "x"}),
        ("GET", "/api/v1/0106%3A3/hook"): boom,
        ("PUT", "/api/v1/0106%3A4/hook"): httpx.Response(404, json={"code": "API404", "message": "no"}),
    })
    calls: list[ApiCall] = []
    client = make(fake, clock=clock).recording(calls.append)
    client.prepare_to_migrate("0106:1")
    with pytest.raises(PsbTransientError):
        client.get_hooks("0106:2")
    with pytest.raises(PsbTransientError):
        client.get_hooks("0106:3")
    with pytest.raises(PsbNotFound):
        client.put_hook("0106:4", {})
    assert calls == [
        ApiCall("POST", "https://identity.example/connect/token", "0106:1", 200, 0.0, None, None),
        ApiCall("GET", "/api/v1/peppol/0106%3A1/prepareToMigrate", "0106:1", 200, 250.0, "ok-1", None),
        ApiCall("GET", "/api/v1/0106%3A2/hook", "0106:2", 500, 0.0, None, "API500"),
        ApiCall("GET", "/api/v1/0106%3A3/hook", "0106:3", None, 0.0, None, "CONNECTION"),
        ApiCall("PUT", "/api/v1/0106%3A4/hook", "0106:4", 404, 0.0, None, "API404"),
    ]
    assert KEY not in repr(calls)


def test_views_share_the_pool_and_token_and_stack_sinks() -> None:
    fake = FakePsb({("GET", "/api/v1/0106%3A1/hook"): httpx.Response(200, json=[])})
    base = make(fake)
    outer: list[ApiCall] = []
    inner: list[ApiCall] = []
    view = base.recording(outer.append)
    nested = view.recording(inner.append)
    base.get_hooks("0106:1")
    view.get_hooks("0106:1")
    nested.get_hooks("0106:1")
    assert fake.tokens == 1
    assert len(outer) == 2 and len(inner) == 1
    nested.close()  # a view does not own the pool
    view.get_hooks("0106:1")
    with base:
        pass
    with pytest.raises(RuntimeError):
        view.get_hooks("0106:1")


def test_a_failing_sink_does_not_lose_the_result(caplog: pytest.LogCaptureFixture) -> None:
    def broken(call: ApiCall) -> None:
        raise ValueError("audit is down")

    fake = FakePsb({("GET", "/api/v1/peppol/0106%3A1/prepareToMigrate"): httpx.Response(
        200, json={"migrationKey": KEY})})
    assert make(fake).recording(broken).prepare_to_migrate("0106:1") == KEY
    assert any("sink failed" in r.getMessage() for r in caplog.records)


def test_log_lines_carry_party_id_and_action(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="migration_engine.psb.client")
    fake = FakePsb({("GET", "/api/v1/0106%3A1/hook"): httpx.Response(200, json=[])})
    make(fake).get_hooks("0106:1")
    api_lines = [r for r in caplog.records if getattr(r, "action", None) == "psb.get_hooks"]
    assert len(api_lines) == 1
    assert api_lines[0].party_id == "0106:1"  # type: ignore[attr-defined]
    assert {getattr(r, "action", None) for r in caplog.records} == {"psb.token", "psb.get_hooks"}


# -- construction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 0},
        {"max_rps": -1},
        {"max_connections": 0},
        {"base_url": "psb.example"},
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, Any]) -> None:
    options: dict[str, Any] = {"base_url": "https://psb.example", "identity_url": "https://id.example",
                               "client_id": "c"} | kwargs
    with pytest.raises(ConfigError):
        PsbClient(**options)


def test_timeout_is_set_on_every_request() -> None:
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"access_token": "t"} if request.url.path == "/connect/token" else [])

    client = PsbClient(base_url="https://psb.example", identity_url="https://id.example", client_id="c",
                       timeout_s=2.5, transport=httpx.MockTransport(route), clock=ManualClock())
    client.get_hooks("0106:1")
    expected = {"connect": 2.5, "read": 2.5, "write": 2.5, "pool": 2.5}
    assert [r.extensions["timeout"] for r in seen] == [expected, expected]


