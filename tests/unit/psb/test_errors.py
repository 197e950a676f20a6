"""PsbClient's errors: body parsing, classification, Retry-After, no answer, secrets scrubbed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import (
    PsbAuthError,
    PsbConflict,
    PsbError,
    PsbNotFound,
    PsbPermanentError,
    PsbTransientError,
)
from migration_engine.keys import mask
from migration_engine.psb.client import ApiCall, PsbClient
from migration_engine.psb.errors import Scrubber, error_class, parse_error_body, parse_retry_after

SECRET = "client-s3cret-value"
PASSWORD = "p4ssw0rd-value"
SUBSCRIPTION = "sub-key-value-123"
KEY = "Ab12@#cdEF34$%xy"
NOW = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)

Handler = Callable[[httpx.Request], httpx.Response]


def make(api: Handler, **kwargs: Any) -> PsbClient:
    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "tok-abc-123456", "expires_in": 3600})
        return api(request)

    return PsbClient(
        base_url="https://psb.example",
        identity_url="https://identity.example",
        client_id="my-client",
        client_secret=SECRET,
        username="alice",
        password=PASSWORD,
        subscription_key=SUBSCRIPTION,
        transport=httpx.MockTransport(route),
        clock=ManualClock(NOW),
        **kwargs,
    )


def psb_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Handler:
    body = {
        "code": code,
        "message": message,
        "helpLink": f"https://psb.econnect.eu/help#{code}",
        "requestId": f"req-{status}",
        "dateTime": "2026-01-05T09:00:00+00:00",
    }
    return lambda request: httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, PsbPermanentError),
        (403, PsbAuthError),
        (404, PsbNotFound),
        (409, PsbConflict),
        (413, PsbPermanentError),
        (422, PsbPermanentError),
        (408, PsbTransientError),
        (429, PsbTransientError),
        (500, PsbTransientError),
        (502, PsbTransientError),
        (503, PsbTransientError),
    ],
)
def test_error_body_is_parsed_and_classified(status: int, expected: type[PsbError]) -> None:
    client = make(psb_error(status, f"API{status}", f"the PSB says {status}"))
    with pytest.raises(PsbError) as caught:
        client.put_party_config("0106:123", {"capabilities": {}})
    error = caught.value
    assert type(error) is expected
    assert isinstance(error, PsbTransientError) == (status in (408, 429) or status >= 500)
    assert error.status == status
    assert error.code == f"API{status}"
    assert error.message == f"the PSB says {status}"
    assert error.request_id == f"req-{status}"
    assert error.help_link == f"https://psb.econnect.eu/help#API{status}"
    assert (error.party_id, error.method) == ("0106:123", "PUT")
    assert error.path == "/api/v1/peppol/config/party/0106%3A123"
    assert str(error) == (
        f"HTTP {status} [API{status}] the PSB says {status} for party 0106:123 "
        "(PUT /api/v1/peppol/config/party/0106%3A123)"
    )


def test_403_is_not_refreshed() -> None:
    seen: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(403, json={"code": "API403", "message": "Access forbidden."})

    with pytest.raises(PsbAuthError):
        make(api).get_hooks("0106:1")
    assert len(seen) == 1


def test_429_with_retry_after_seconds() -> None:
    client = make(psb_error(429, "API429", "slow down", {"Retry-After": "7"}))
    with pytest.raises(PsbTransientError) as caught:
        client.get_hooks("0106:1")
    assert caught.value.retry_after_s == 7.0


def test_429_with_retry_after_http_date() -> None:
    client = make(psb_error(429, "API429", "slow down", {"Retry-After": "Mon, 05 Jan 2026 09:02:00 GMT"}))
    with pytest.raises(PsbTransientError) as caught:
        client.get_hooks("0106:1")
    assert caught.value.retry_after_s == 120.0


def test_503_without_retry_after() -> None:
    with pytest.raises(PsbTransientError) as caught:
        make(psb_error(503, "API503", "maintenance")).get_hooks("0106:1")
    assert caught.value.retry_after_s is None


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("0", 0.0),
        ("120", 120.0),
        (" 1.5 ", 1.5),
        ("-4", 0.0),
        ("Mon, 05 Jan 2026 09:00:30 GMT", 30.0),
        ("Mon, 05 Jan 2026 08:00:00 GMT", 0.0),  # in the past
        ("Monday, 05-Jan-26 09:01:00 GMT", 60.0),  # RFC 850, obsolete but allowed
        ("soon", None),
        ("", None),
        (None, None),
        ("nan", None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    assert parse_retry_after(value, NOW) == seconds


def test_non_json_body_gets_json02_and_a_short_excerpt() -> None:
    page = "<html><body><h1>502 Bad Gateway</h1>" + "x" * 5000 + "</body></html>"
    client = make(lambda request: httpx.Response(502, text=page, headers={"content-type": "text/html"}))
    with pytest.raises(PsbTransientError) as caught:
        client.get_hooks("0106:1")
    error = caught.value
    assert error.code == "PSB502.JSON02"
    assert "502 Bad Gateway" in error.message
    assert len(error.message) < 250


def test_empty_error_body() -> None:
    with pytest.raises(PsbNotFound) as caught:
        make(lambda request: httpx.Response(404)).put_hook("0106:1", {"name": "h"})
    assert caught.value.code == "PSB404.JSON02"
    assert "Not Found" in caught.value.message


def test_json_error_in_another_shape_keeps_the_servers_message() -> None:
    body = {"type": "about:blank", "title": "Bad Request", "detail": "capabilities.invoices is required"}
    with pytest.raises(PsbPermanentError) as caught:
        make(lambda request: httpx.Response(400, json=body)).put_party_config("0106:1", {})
    assert (caught.value.code, caught.value.message) == ("PSB400", "capabilities.invoices is required")


def test_request_id_from_a_header_when_the_body_has_none() -> None:
    api = lambda request: httpx.Response(500, text="oops", headers={"X-Request-Id": "hdr-1"})  # noqa: E731
    with pytest.raises(PsbTransientError) as caught:
        make(api).get_hooks("0106:1")
    assert caught.value.request_id == "hdr-1"


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ReadTimeout("read timed out"), "TIMEOUT"),
        (httpx.ConnectTimeout("connect timed out"), "TIMEOUT"),
        (httpx.PoolTimeout("no free connection"), "TIMEOUT"),
        (httpx.ConnectError("[Errno 111] Connection refused"), "CONNECTION"),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), "CONNECTION"),
        (httpx.ReadError("connection reset by peer"), "CONNECTION"),
    ],
)
def test_no_answer_is_transient_and_recorded(exc: httpx.TransportError, code: str) -> None:
    def api(request: httpx.Request) -> httpx.Response:
        raise exc

    calls: list[ApiCall] = []
    with pytest.raises(PsbTransientError) as caught:
        make(api).recording(calls.append).prepare_to_migrate("0106:123")
    error = caught.value
    assert error.code == code
    assert error.__cause__ is exc
    assert error.status is None
    assert (error.party_id, error.method) == ("0106:123", "GET")
    assert error.retry_after_s is None
    assert calls[-1].status is None and calls[-1].error_code == code


def test_successful_answer_that_is_not_json_is_never_quoted() -> None:
    client = make(lambda request: httpx.Response(200, text=f"migrationKey={KEY}"))
    calls: list[ApiCall] = []
    with pytest.raises(PsbPermanentError) as caught:
        client.recording(calls.append).prepare_to_migrate("0106:1")
    assert caught.value.code == "PSB200.JSON02"
    assert KEY not in str(caught.value)
    assert calls[-1].error_code == "PSB200.JSON02"


def test_prepare_answer_without_a_key() -> None:
    calls: list[ApiCall] = []
    client = make(lambda request: httpx.Response(200, json={"status": "ok"}))
    with pytest.raises(PsbPermanentError) as caught:
        client.recording(calls.append).prepare_to_migrate("0106:1")
    assert caught.value.code == "PSB200.BODY01"
    assert [(c.status, c.error_code) for c in calls][-1] == (200, "PSB200.BODY01")


def test_a_key_echoed_in_an_error_is_masked(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="migration_engine")
    message = f"Migration key '{KEY}' is invalid or expired (also seen as {quote(KEY, safe='')})"
    calls: list[ApiCall] = []
    client = make(psb_error(400, "API400", message)).recording(calls.append)
    with pytest.raises(PsbPermanentError) as caught:
        client.submit_migration_key("0106:123", KEY)
    error = caught.value
    shown = " ".join([str(error), repr(error), error.message, *map(str, error.args)])
    assert KEY not in shown
    assert "%40" not in shown  # the percent-encoded echo is caught as well
    assert f"Migration key '{mask(KEY)}' is invalid or expired" in error.message
    assert KEY not in repr(calls)
    assert_no_secret_logged(caplog, KEY)


def test_no_secret_in_errors_logs_or_reprs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="migration_engine")
    echo = f"bad: {SECRET} {PASSWORD} {SUBSCRIPTION} Bearer tok-abc-123456"
    client = make(psb_error(400, "API400", echo))
    with pytest.raises(PsbPermanentError) as caught:
        client.put_hook("0106:1", {"name": "h"})
    error = caught.value
    shown = " ".join([str(error), repr(error), repr(client), repr(client.recording(lambda call: None))])
    for secret in (SECRET, PASSWORD, SUBSCRIPTION, "tok-abc-123456"):
        assert secret not in shown
        assert_no_secret_logged(caplog, secret)
    assert error.message == "bad: *** *** *** Bearer ***"


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture, secret: str) -> None:
    assert caplog.records, "expected the client to log"
    for record in caplog.records:
        assert secret not in record.getMessage()
        assert secret not in repr(record.__dict__)


# -- the pure functions --------------------------------------------------------------------


def test_error_class_table() -> None:
    assert error_class(401) is PsbAuthError
    assert error_class(418) is PsbPermanentError
    assert error_class(504) is PsbTransientError
    assert error_class(302) is PsbPermanentError


def test_parse_error_body_with_non_string_fields() -> None:
    body = parse_error_body(409, b'{"code": 17, "message": null, "requestId": 5}', Scrubber())
    assert (body.code, body.message, body.request_id) == ("17", "Conflict", "5")


def test_parse_error_body_not_utf8() -> None:
    body = parse_error_body(500, b"\xff\xfe\x00oops", Scrubber())
    assert body.code == "PSB500.JSON02"


def test_scrubber_replaces_longest_secret_first() -> None:
    scrub = Scrubber(secrets=["abc", "abcdef"], keys=[KEY])
    assert scrub(f"abcdef abc {KEY}") == f"*** *** {mask(KEY)}"
    assert "abc" not in repr(scrub)
