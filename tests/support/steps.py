"""Helpers of the engine's step tests: a scripted PSB (``httpx.MockTransport``) and a
``StepContext`` on it, a migration record to hand a step, and running the step for its state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import httpx

from migration_engine.clock import ManualClock
from migration_engine.engine.outcomes import Outcome
from migration_engine.engine.steps import StepContext, step_for
from migration_engine.keys import KeyVault
from migration_engine.machine import Direction, State
from migration_engine.profiles import ProfileCatalog
from migration_engine.psb.client import PsbClient
from migration_engine.settings import Settings
from migration_engine.store import MigrationRecord
from tests.support import PROFILES, TEST_KEK
from tests.support.records import migration_record

OUR_AP = Settings().psb.access_point_url
KEY = "11AAbb$$11AAbb$$"
VAULT = KeyVault(TEST_KEK)

Answer = httpx.Response | Callable[[httpx.Request], httpx.Response]


def record(
    direction: Direction = Direction.TO_ECONNECT, state: State = State.KEY_ISSUED, **overrides: Any
) -> MigrationRecord:
    """A migration of party 0106:12345678 in ``state``, holding ``KEY`` encrypted; fields overridable."""
    now = ManualClock().now()
    fields: dict[str, Any] = dict(
        direction=direction,
        state=state,
        version=2,
        new_provider="provider-b",
        key_issued_at=now,
        next_run_at=now,
        lease_owner="w",
        lease_until=now,
        created_at=now,
        updated_at=now,
    )
    made = migration_record(**(fields | overrides))
    if "key_ciphertext" in overrides:
        return made
    return replace(made, key_ciphertext=VAULT.encrypt(KEY, migration_id=made.id, party_id=made.party_id))


class ScriptedPsb:
    """Answers by (method, path fragment); records every request."""

    def __init__(self, routes: Mapping[tuple[str, str], Answer]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/connect/token":
            return httpx.Response(200, json={"access_token": "t", "expires_in": 3600, "token_type": "Bearer"})
        self.requests.append(request)
        for (method, fragment), answer in self.routes.items():
            if request.method == method and fragment in str(request.url):
                return answer(request) if callable(answer) else answer
        return httpx.Response(404, json={"code": "API404", "message": "not found"})

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.url.path) for r in self.requests]


def ctx_for(script: ScriptedPsb, clock: ManualClock | None = None, settings: Settings | None = None) -> StepContext:
    """A step context whose PSB client talks to ``script``, on ``clock`` (a new ManualClock by default)."""
    clock = clock or ManualClock()
    psb = PsbClient(
        base_url="http://psb.test",
        identity_url="http://id.test",
        client_id="c",
        client_secret="s",
        transport=httpx.MockTransport(script),
        clock=clock,
    )
    return StepContext(
        psb=psb,
        settings=settings or Settings(),
        profiles=ProfileCatalog.load(PROFILES),
        vault=VAULT,
        handoff=None,
        now=clock.now(),
    )


def run(ctx: StepContext, rec: MigrationRecord) -> Outcome:
    """Run the step for the record's direction and state."""
    step = step_for(rec.direction, rec.state)
    assert step is not None
    return step(ctx, rec)


def option(url: str) -> dict[str, str]:
    """A deliveryOption entry of party 0106:12345678 pointing at ``url``."""
    return {"partyId": "0106:12345678", "documentTypeId": "x", "processId": "p", "protocol": "As4", "url": url}
