"""PsbClient's OAuth2 tokens: grants, caching, renewal, the single 401 refresh, token errors."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.errors import PsbAuthError, PsbTransientError
from migration_engine.psb.auth import Token, TokenCache
from migration_engine.psb.client import ApiCall, PsbClient

BASE = "https://psb.example"
IDENTITY = "https://identity.example"
SECRET = "client-s3cret-value"
PASSWORD = "p4ssw0rd-value"
SUBSCRIPTION = "sub-key-value-123"

Handler = Callable[[httpx.Request], httpx.Response]


def ok_api(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json=[])


class Fake:
    """The identity server and the PSB behind one MockTransport; counts what it serves."""

    def __init__(self, api: Handler = ok_api, token: Handler | None = None, expires_in: float = 3600) -> None:
        self.api = api
        self.token = token
        self.expires_in = expires_in
        self.token_requests: list[httpx.Request] = []
        self.api_requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            self.token_requests.append(request)
            if self.token is not None:
                return self.token(request)
            n = len(self.token_requests)
            return httpx.Response(
                200, json={"access_token": f"tok-{n}", "expires_in": self.expires_in, "token_type": "Bearer"}
            )
        self.api_requests.append(request)
        return self.api(request)


def make(fake: Fake, clock: ManualClock | None = None, **kwargs: Any) -> PsbClient:
    options: dict[str, Any] = {"client_secret": SECRET, **kwargs}
    return PsbClient(
        base_url=BASE,
        identity_url=IDENTITY,
        client_id="my-client",
        transport=httpx.MockTransport(fake),
        clock=clock or ManualClock(),
        **options,
    )


def form(request: httpx.Request) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(request.content.decode()).items()}


def test_client_credentials_grant_form() -> None:
    fake = Fake()
    make(fake).get_hooks("0106:1")
    (request,) = fake.token_requests
    assert str(request.url) == "https://identity.example/connect/token"
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert form(request) == {
        "scope": "ap",
        "grant_type": "client_credentials",
        "client_id": "my-client",
        "client_secret": SECRET,
    }


def test_password_grant_form_when_a_username_is_set() -> None:
    fake = Fake()
    make(fake, username="alice", password=PASSWORD).get_hooks("0106:1")
    assert form(fake.token_requests[0]) == {
        "username": "alice",
        "password": PASSWORD,
        "scope": "ap",
        "grant_type": "password",
        "client_id": "my-client",
        "client_secret": SECRET,
    }


def test_empty_strings_from_settings_mean_not_configured() -> None:
    fake = Fake()
    make(fake, username="", password="", subscription_key="").get_hooks("0106:1")
    assert form(fake.token_requests[0])["grant_type"] == "client_credentials"
    assert "subscription-key" not in fake.api_requests[0].headers


def test_api_headers_and_token_cached() -> None:
    fake = Fake()
    client = make(fake, subscription_key=SUBSCRIPTION)
    client.get_hooks("0106:1")
    client.get_hooks("0106:2")
    assert len(fake.token_requests) == 1
    for request in fake.api_requests:
        assert request.headers["authorization"] == "Bearer tok-1"
        assert request.headers["accept"] == "application/json"
        assert request.headers["subscription-key"] == SUBSCRIPTION


def test_token_renewed_when_less_than_60_s_remain() -> None:
    clock = ManualClock()
    fake = Fake()
    client = make(fake, clock=clock)
    client.get_hooks("0106:1")
    clock.advance(3600 - 60.5)  # 60.5 s left: still good
    client.get_hooks("0106:1")
    assert len(fake.token_requests) == 1
    clock.advance(1)  # 59.5 s left: renew
    client.get_hooks("0106:1")
    assert len(fake.token_requests) == 2
    assert fake.api_requests[-1].headers["authorization"] == "Bearer tok-2"


def test_short_lived_token_is_renewed_at_half_its_life() -> None:
    clock = ManualClock()
    fake = Fake(expires_in=40)
    client = make(fake, clock=clock)
    client.get_hooks("0106:1")
    clock.advance(19)
    client.get_hooks("0106:1")
    assert len(fake.token_requests) == 1
    clock.advance(1)
    client.get_hooks("0106:1")
    assert len(fake.token_requests) == 2


def test_401_drops_the_token_fetches_a_new_one_and_repeats_once() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] == "Bearer tok-1":
            return httpx.Response(401, json={"code": "API401", "message": "token expired"})
        return httpx.Response(200, json=[{"id": "h1"}])

    fake = Fake(api)
    calls: list[ApiCall] = []
    assert make(fake).recording(calls.append).get_hooks("0106:1") == [{"id": "h1"}]
    assert len(fake.token_requests) == 2
    assert len(fake.api_requests) == 2
    assert [(c.path, c.status, c.error_code) for c in calls] == [
        ("https://identity.example/connect/token", 200, None),
        ("/api/v1/0106%3A1/hook", 401, "API401"),
        ("https://identity.example/connect/token", 200, None),
        ("/api/v1/0106%3A1/hook", 200, None),
    ]


def test_second_401_is_an_auth_error_and_no_third_try() -> None:
    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"code": "API401", "message": "Unauthorized", "requestId": "r-9"})

    fake = Fake(api)
    with pytest.raises(PsbAuthError) as caught:
        make(fake).get_hooks("0106:1")
    assert len(fake.api_requests) == 2
    assert len(fake.token_requests) == 2
    error = caught.value
    assert (error.status, error.code, error.request_id, error.party_id) == (401, "API401", "r-9", "0106:1")
    assert (error.method, error.path) == ("GET", "/api/v1/0106%3A1/hook")


def test_token_refusal_is_oauth01_and_never_shows_the_secret() -> None:
    def token(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": "invalid_client", "error_description": f"client secret {SECRET} is wrong"}
        )

    fake = Fake(token=token)
    with pytest.raises(PsbAuthError) as caught:
        make(fake, username="alice", password=PASSWORD).get_hooks("0106:1")
    error = caught.value
    assert (error.code, error.status, error.party_id) == ("OAUTH01", 400, "0106:1")
    assert "invalid_client" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error) and "***" in str(error)
    assert fake.api_requests == []


@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, json={"token_type": "Bearer", "expires_in": 3600}),
        httpx.Response(200, json={"access_token": ""}),
        httpx.Response(200, json=["not", "an", "object"]),
        httpx.Response(200, text="<html>login</html>"),
    ],
)
def test_token_answer_without_access_token_is_oauth02(answer: httpx.Response) -> None:
    fake = Fake(token=lambda request: answer)
    calls: list[ApiCall] = []
    with pytest.raises(PsbAuthError) as caught:
        make(fake).recording(calls.append).get_hooks("0106:1")
    assert caught.value.code == "OAUTH02"
    assert [(c.status, c.error_code) for c in calls] == [(200, "OAUTH02")]
    assert fake.api_requests == []


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_token_endpoint_trouble_is_transient(status: int) -> None:
    fake = Fake(token=lambda request: httpx.Response(status, headers={"Retry-After": "5"}, text="busy"))
    with pytest.raises(PsbTransientError) as caught:
        make(fake).get_hooks("0106:1")
    assert (caught.value.status, caught.value.code, caught.value.retry_after_s) == (status, "OAUTH01", 5.0)


def test_token_endpoint_timeout_is_transient_and_nothing_is_cached() -> None:
    attempts = []

    def token(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        if len(attempts) == 1:
            raise httpx.ConnectTimeout("timed out", request=request)
        return httpx.Response(200, json={"access_token": "tok-ok", "expires_in": 3600})

    fake = Fake(token=token)
    client = make(fake)
    with pytest.raises(PsbTransientError) as caught:
        client.get_hooks("0106:1")
    assert caught.value.code == "TIMEOUT"
    assert isinstance(caught.value.__cause__, httpx.ConnectTimeout)
    client.get_hooks("0106:1")
    assert fake.api_requests[0].headers["authorization"] == "Bearer tok-ok"


def test_only_one_thread_fetches_a_token() -> None:
    fake = Fake()
    client = make(fake)
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def work() -> None:
        start.wait()
        try:
            client.get_hooks("0106:1")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(fake.token_requests) == 1
    assert len(fake.api_requests) == 8


def test_invalidate_leaves_a_token_another_thread_already_renewed() -> None:
    clock = ManualClock()
    cache = TokenCache(clock=clock)
    assert cache.get(lambda: Token("old", renew_at=clock.monotonic() + 100)) == "old"
    cache.invalidate("old")
    assert cache.get(lambda: Token("new", renew_at=clock.monotonic() + 100)) == "new"
    cache.invalidate("old")  # a late 401 for the old token
    assert cache.get(lambda: Token("newer", renew_at=0)) == "new"
    assert "new" not in repr(cache)


def test_token_value_not_in_repr() -> None:
    assert "tok-secret" not in repr(Token("tok-secret", renew_at=1.0))
