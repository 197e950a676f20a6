"""The sandbox over real HTTP: a SandboxServer on a free loopback port, httpx against it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.keys import generate_key, key_problem
from migration_engine.sandbox import ECONNECT, SandboxConfig, SandboxServer

PARTY = "0106:12345678"
ENCODED = "0106%3a12345678"
EC_AP = SandboxConfig().access_point_url
B_AP = "https://ap.provider-b.example/as4"
CLIENT = {
    "grant_type": "client_credentials",
    "client_id": "sandbox-client",
    "client_secret": "sandbox-secret",
    "scope": "ap",
}


def start(clock: ManualClock, **overrides: object) -> SandboxServer:
    return SandboxServer(SandboxConfig(**overrides), clock=clock).start()  # type: ignore[arg-type]


@pytest.fixture
def sandbox_config() -> SandboxConfig:
    return SandboxConfig(propagation_delay_s=60)


def client_for(server: SandboxServer) -> httpx.Client:
    token = httpx.post(f"{server.url}/connect/token", data=CLIENT).json()["access_token"]
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=5)


@pytest.fixture
def api(sandbox: SandboxServer) -> Iterator[httpx.Client]:
    with client_for(sandbox) as client:
        yield client


def assert_error_body(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status
    body = response.json()
    assert set(body) == {"code", "message", "helpLink", "requestId", "dateTime"}
    assert body["requestId"] == response.headers["X-Request-Id"]
    assert isinstance(body["message"], str) and body["message"]
    return body


def delivery_urls(api: httpx.Client, party: str = PARTY) -> set[str]:
    response = api.get("/api/v1/peppol/deliveryOption", params={"partyIds": [party]})
    assert response.status_code == 200
    return {option["url"] for option in response.json()}


# -- identity ---------------------------------------------------------------------------------


def test_token_grants_and_refusals(sandbox: SandboxServer) -> None:
    answer = httpx.post(f"{sandbox.url}/connect/token", data=CLIENT)
    assert answer.status_code == 200
    body = answer.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600 and body["access_token"]
    password = {
        **CLIENT,
        "grant_type": "password",
        "username": "sandbox-user",
        "password": "sandbox-password",
    }
    assert httpx.post(f"{sandbox.url}/connect/token", data=password).status_code == 200
    bad = httpx.post(f"{sandbox.url}/connect/token", data={**CLIENT, "client_secret": "wrong"})
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_client"
    wrong_user = httpx.post(f"{sandbox.url}/connect/token", data={**password, "password": "nope"})
    assert wrong_user.status_code == 400 and wrong_user.json()["error"] == "invalid_grant"


def test_401_without_a_token_and_after_expiry(clock: ManualClock) -> None:
    with start(clock, token_ttl_s=300) as server, client_for(server) as api:
        server.model.register(PARTY, ECONNECT)
        assert api.get(f"/api/v1/peppol/config/party/{ENCODED}").status_code == 200
        assert_error_body(httpx.get(f"{server.url}/api/v1/peppol/config/party/{ENCODED}"), 401)
        clock.advance(301)
        body = assert_error_body(api.get(f"/api/v1/peppol/config/party/{ENCODED}"), 401)
        assert body["code"] == "API401"


def test_revoke_tokens_and_change_ttl_at_runtime(sandbox: SandboxServer, api: httpx.Client) -> None:
    assert api.get("/api/v1/user/u/party").status_code == 200
    assert httpx.post(f"{sandbox.url}/sandbox/tokens/revoke").json()["revoked"] >= 1
    assert_error_body(api.get("/api/v1/user/u/party"), 401)
    assert httpx.post(f"{sandbox.url}/sandbox/faults", json={"tokenTtlS": 5}).json()["tokenTtlS"] == 5
    assert httpx.post(f"{sandbox.url}/connect/token", data=CLIENT).json()["expires_in"] == 5


# -- errors and ids ---------------------------------------------------------------------------


def test_party_ids_in_any_notation_and_bad_ids(sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.model.register(PARTY, ECONNECT)
    for path in (
        "0106%3a12345678",
        "0106%3A12345678",
        "0106:12345678",
        "NL:KVK:12345678",
        "NL%3AKVK%3A12345678",
    ):
        response = api.get(f"/api/v1/peppol/config/party/{path}")
        assert response.status_code == 200 and response.json()["id"] == PARTY
        assert response.headers["X-Request-Id"]
    assert_error_body(api.get("/api/v1/peppol/config/party/not-an-id"), 400)
    assert_error_body(api.get("/api/v1/peppol/config/party/0106%3A87654321"), 404)
    assert_error_body(api.get("/api/v1/no/such/endpoint"), 404)
    assert_error_body(api.post(f"/api/v1/peppol/config/party/{ENCODED}"), 405)
    assert_error_body(api.put(f"/api/v1/peppol/config/party/{ENCODED}", content=b"{nope"), 400)


# -- flows ------------------------------------------------------------------------------------


def test_outbound_flow(clock: ManualClock, sandbox: SandboxServer, api: httpx.Client) -> None:
    sandbox.model.register(PARTY, ECONNECT)
    api.put(
        f"/api/v1/{ENCODED}/hook", json={"name": "mail", "action": "mailto:a@example.com", "topics": ["*"]}
    )
    api.put("/api/v1/user/sandbox-user/party", json={"id": PARTY, "permissions": {"canSendDocument": True}})

    prepared = api.get(f"/api/v1/peppol/{ENCODED}/prepareToMigrate")
    assert prepared.status_code == 200
    key = prepared.json()["migrationKey"]
    assert key_problem(key) is None
    assert httpx.get(f"{sandbox.url}/sandbox/parties/{PARTY}").json()["inMigration"] is True

    handoff = httpx.post(
        f"{sandbox.url}/sandbox/providers/provider-b/handoff", json={"partyId": PARTY, "migrationKey": key}
    )
    assert handoff.status_code == 202 and handoff.json() == {"accepted": True}
    assert_error_body(api.get(f"/api/v1/peppol/config/party/{ENCODED}"), 404)  # eConnect removed it
    assert delivery_urls(api) == {EC_AP}  # DNS not yet propagated
    clock.advance(60)
    assert delivery_urls(api) == {B_AP}

    hooks = api.get(f"/api/v1/{ENCODED}/hook").json()  # leftovers for the engine to clean
    assert len(hooks) == 1
    assert api.delete(f"/api/v1/{ENCODED}/hook/{hooks[0]['id']}").status_code == 200
    deleted = api.delete(f"/api/v1/user/sandbox-user/party/{ENCODED}")
    assert deleted.status_code == 200 and deleted.content == b""

    info = httpx.get(f"{sandbox.url}/sandbox/parties/{PARTY}").json()
    assert info["owner"] == "provider-b" and info["dnsSmp"] == "provider-b" and info["hooks"] == []
    calls = httpx.get(f"{sandbox.url}/sandbox/calls", params={"partyId": "NL:KVK:12345678"}).json()
    mutating = [(c["method"], c["path"].split("/")[-1]) for c in calls if c["mutating"]]
    assert ("GET", "prepareToMigrate") in mutating and len(mutating) == 5
    assert all(c["partyId"] == PARTY for c in calls)


def test_inbound_flow(clock: ManualClock, sandbox: SandboxServer, api: httpx.Client) -> None:
    url = sandbox.url
    assert (
        httpx.post(f"{url}/sandbox/providers/provider-b/parties", json={"partyId": PARTY}).status_code == 201
    )
    assert delivery_urls(api) == set()  # a new registration: DNS not there yet
    clock.advance(60)
    assert delivery_urls(api) == {B_AP}
    assert_error_body(api.get(f"/api/v1/peppol/config/party/{ENCODED}"), 404)
    conflict = api.put(f"/api/v1/peppol/config/party/{ENCODED}", json={"capabilities": {"invoices": "on"}})
    assert "another SMP" in assert_error_body(conflict, 409)["message"]  # type: ignore[operator]

    key = httpx.post(f"{url}/sandbox/providers/provider-b/prepare", json={"partyId": PARTY}).json()[
        "migrationKey"
    ]
    taken = api.put(f"/api/v1/peppol/config/party/{ENCODED}", json={"migration": {"key": key}})
    assert taken.status_code == 200 and taken.json()["id"] == PARTY
    assert (
        api.put(f"/api/v1/peppol/config/party/{ENCODED}", json={"migration": {"key": key}}).status_code == 200
    )
    assert api.get(f"/api/v1/peppol/config/party/{ENCODED}").status_code == 200
    assert delivery_urls(api) == {B_AP}
    clock.advance(60)
    assert delivery_urls(api) == {EC_AP}

    caps = {"capabilities": {"invoices": "on", "invoiceResponse": "on"}, "businessCard": {"names": "ACME"}}
    updated = api.put(f"/api/v1/peppol/config/party/{ENCODED}", json=caps).json()
    assert updated["capabilities"]["invoiceResponse"]["state"] == "on"
    hook = api.put(
        f"/api/v1/{ENCODED}/hook", json={"name": "h", "action": "https://example.com/h", "topics": ["x"]}
    )
    assert hook.status_code == 200 and hook.json()["id"]
    enroll = {
        "services": {"peppol": {"businessCard": {"email": "info@example.com"}}},
        "partyAuthorizations": [{"userId": "sandbox-user", "permissions": {"canReceiveDocument": True}}],
    }
    assert api.put(f"/api/v1-beta/{ENCODED}/enroll", json=enroll).json() == enroll
    assert api.get("/api/v1/user/sandbox-user/party").json()[0]["id"] == PARTY
    listed = api.get("/api/v1/peppol/config/party").json()
    assert listed == {"items": [{"id": PARTY}]}


@pytest.mark.parametrize("status", [403, 422])
def test_refused_keys_use_the_configured_status(clock: ManualClock, status: int) -> None:
    with start(clock, key_reject_status=status) as server, client_for(server) as api:
        server.model.register(PARTY, "provider-b")
        server.model.provider_prepare("provider-b", PARTY)
        refused = api.put(
            f"/api/v1/peppol/config/party/{ENCODED}", json={"migration": {"key": generate_key()}}
        )
        assert "new key" in assert_error_body(refused, status)["message"]  # type: ignore[operator]
        weak = api.put(f"/api/v1/peppol/config/party/{ENCODED}", json={"migration": {"key": "abc123-def456"}})
        assert "ERR-106" in assert_error_body(weak, 400)["message"]  # type: ignore[operator]
        assert httpx.get(f"{server.url}/sandbox/config").json()["keyRejectStatus"] == status


# -- faults -----------------------------------------------------------------------------------


def test_rate_limit_answers_429_with_retry_after(clock: ManualClock) -> None:
    with start(clock, rate_limit_rps=2) as server, client_for(server) as api:
        assert [api.get("/api/v1/user/u/party").status_code for _ in range(2)] == [200, 200]
        limited = api.get("/api/v1/user/u/party")
        assert_error_body(limited, 429)
        assert int(limited.headers["Retry-After"]) >= 1
        assert httpx.post(f"{server.url}/connect/token", data=CLIENT).status_code == 200  # no faults there
        clock.advance(1)
        assert api.get("/api/v1/user/u/party").status_code == 200
        assert server.model.calls()[2]["fault"] == "rate_limited"


def test_injected_errors_have_the_error_body_and_change_nothing(clock: ManualClock) -> None:
    with start(clock, error_rate=1.0) as server, client_for(server) as api:
        server.model.register(PARTY, ECONNECT)
        for _ in range(5):
            response = api.get(f"/api/v1/peppol/{ENCODED}/prepareToMigrate")
            assert response.status_code in (500, 503)
            assert_error_body(response, response.status_code)
        assert server.model.party(PARTY)["migration"] is None  # type: ignore[index]


def test_dropped_connections_before_and_after_processing(clock: ManualClock) -> None:
    with start(clock, drop_rate=1.0, drop_after_processing_share=0.0) as server, client_for(server) as api:
        server.model.register(PARTY, ECONNECT)
        with pytest.raises(httpx.TransportError):
            api.get(f"/api/v1/peppol/{ENCODED}/prepareToMigrate")
        assert server.model.party(PARTY)["migration"] is None  # type: ignore[index]
        httpx.post(f"{server.url}/sandbox/faults", json={"dropAfterProcessingShare": 1.0})
        with pytest.raises(httpx.TransportError):
            api.get(f"/api/v1/peppol/{ENCODED}/prepareToMigrate")
        assert server.model.party(PARTY)["migration"] is not None  # type: ignore[index]
        faults = [c["fault"] for c in server.model.calls(PARTY)]
        assert faults == ["dropped_before", "dropped_after"]
        httpx.post(f"{server.url}/sandbox/faults", json={"dropRate": 0})
        assert api.get(f"/api/v1/peppol/config/party/{ENCODED}").status_code == 200


def test_latency_and_concurrency(clock: ManualClock) -> None:
    with start(clock, latency_ms=50) as server:
        token = httpx.post(f"{server.url}/connect/token", data=CLIENT).json()["access_token"]

        async def burst() -> list[int]:
            limits = httpx.Limits(max_connections=32)
            headers = {"Authorization": f"Bearer {token}"}
            async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits) as client:
                answers = await asyncio.gather(*(client.get("/api/v1/user/u/party") for _ in range(32)))
            return [a.status_code for a in answers]

        began = time.monotonic()
        assert asyncio.run(burst()) == [200] * 32
        assert time.monotonic() - began < 1.5  # 32 x 50 ms in parallel, not in series (1.6 s)


def test_throughput_at_zero_latency(clock: ManualClock) -> None:
    """The server does 500+ requests/s; measured with a minimal keep-alive client, since an
    in-process httpx.AsyncClient is itself slower than that (it shares the GIL)."""
    with start(clock) as server:
        server.model.register(PARTY, ECONNECT)
        token = httpx.post(f"{server.url}/connect/token", data=CLIENT).json()["access_token"]
        request = (
            f"GET /api/v1/peppol/config/party/{ENCODED} HTTP/1.1\r\nHost: sandbox\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()

        async def connection(count: int) -> list[bytes]:
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            statuses = []
            for _ in range(count):
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                statuses.append(head.split(b" ")[1])
            writer.close()
            return statuses

        async def run() -> list[bytes]:
            done = await asyncio.gather(*(connection(100) for _ in range(10)))
            return [status for statuses in done for status in statuses]

        began = time.monotonic()
        assert asyncio.run(run()) == [b"200"] * 1000
        elapsed = time.monotonic() - began
        assert elapsed < 2.0, f"1000 requests took {elapsed:.2f}s (under 500 requests/s)"


def test_inspection_seeding_and_clock(clock: ManualClock, sandbox: SandboxServer) -> None:
    url = sandbox.url
    seeded = httpx.post(f"{url}/sandbox/parties", json={"partyId": "NL:KVK:87654321", "owner": "provider-b"})
    assert seeded.status_code == 201 and seeded.json()["owner"] == "provider-b"
    assert httpx.post(f"{url}/sandbox/parties", json={"partyId": PARTY, "owner": "nobody"}).status_code == 404
    added = httpx.post(
        f"{url}/sandbox/providers", json={"name": "provider-c", "apUrl": "https://c.example/as4"}
    )
    assert {p["name"] for p in added.json()["providers"]} == {"provider-b", "provider-c"}
    assert [p["partyId"] for p in httpx.get(f"{url}/sandbox/parties").json()] == ["0106:87654321"]
    before = clock.now()
    assert httpx.post(f"{url}/sandbox/clock/advance", json={"seconds": 30}).status_code == 200
    assert (clock.now() - before).total_seconds() == 30
    assert httpx.get(f"{url}/sandbox/parties/{PARTY}").status_code == 404


def test_throttling_answers_429_with_retry_after_and_the_log_names_the_party(clock: ManualClock) -> None:
    with start(clock, throttle_rate=1.0) as server, client_for(server) as api:
        arrived = clock.now()
        throttled = api.get("/api/v1/peppol/deliveryOption", params={"partyIds": PARTY})
        assert_error_body(throttled, 429)
        assert throttled.headers["Retry-After"] == "1" and "throttling" in throttled.json()["message"]
        # Answered before any handler ran, yet the log names the party looked up, at its arrival.
        [call] = server.model.calls()
        assert (call["fault"], call["partyId"], call["at"]) == ("throttled", PARTY, arrived.isoformat())
        assert httpx.post(f"{server.url}/sandbox/faults", json={"throttleRate": 2}).status_code == 400
        assert httpx.post(f"{server.url}/sandbox/faults", json={"throttleRate": 0}).json()["throttleRate"] == 0
        assert api.get("/api/v1/peppol/deliveryOption", params={"partyIds": PARTY}).status_code == 200
        assert server.model.tokens.issued() and all(len(t) > 20 for t in server.model.tokens.issued())
