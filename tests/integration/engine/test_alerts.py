"""Alerts end to end on SQLite and PostgreSQL: audit events -> alerts -> digests -> the outbox ->
a webhook over loopback that is down for a while. Every alert arrives once, signed, after the
receiver comes back; 500 failures in a minute are one message; a restart repeats nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migration_engine.engine.alerts import Alerts, audit_verify_failed
from migration_engine.engine.alerts_send import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from migration_engine.machine import Direction, State
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import Change, EventIn, NewMigration
from tests.support.records import party
from tests.support.webhooks import Receiver

SECRET = "webhook-secret-for-tests-0123456789"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.down()


def alert_settings(receiver: Receiver, **alerts: object) -> Settings:
    body = {"webhooks": (receiver.url,), "webhook_secret": SECRET, "digest_s": 60.0, "retry_base_s": 30.0,
            "retry_max_s": 240.0, "console_url": "https://console.example", **alerts}  # fmt: skip
    return with_overrides(Settings(), alerts=body)


def import_parties(store, batch: str, first: int, n: int, state: State = State.KEY_ISSUED) -> None:
    items = [
        NewMigration(party_id=party(i), direction=Direction.TO_ECONNECT, state=state) for i in range(first, first + n)
    ]
    store.add_migrations(batch_name=batch, items=items, actor="tester")


def move(store, ids: range, to: State, **detail: object) -> None:
    """Move each party's migration to ``to`` as a worker would (one transaction per 100)."""
    changes = []
    for i in ids:
        r = store.find_party(party(i))[0]
        event = EventIn(kind="transition", actor="w1", from_state=r.state, to_state=to, detail=dict(detail))
        changes.append(Change(r.id, r.state, r.version, new_state=to, events=[event]))
    for start in range(0, len(changes), 100):
        assert all(store.apply_many(changes[start : start + 100]))


def test_a_receiver_down_for_a_while_gets_every_alert_once_signed(store, make_store, clock, receiver):
    settings = alert_settings(receiver)
    import_parties(store, "b1", 0, 4)
    import_parties(store, "b2", 10, 1)
    move(store, range(0, 2), State.NEEDS_ATTENTION, error="PSB answered 500 three times")
    move(store, range(2, 3), State.KEY_REJECTED)
    move(store, range(10, 11), State.NEEDS_ATTENTION)
    audit_verify_failed(store, broken=1, first="migration 1", by="test", at=clock.now())

    alerts = Alerts(store=store, settings=settings, clock=clock, owner="w1")
    stats = alerts.run_once()
    assert stats is not None and stats.produced == 4 and stats.messages == 0  # the digest window is open
    assert receiver.attempts == 0

    # The receiver is down (refused), then failing (503), for about ten minutes of retries.
    clock.advance(61)
    for round_ in range(8):
        if round_ == 4:
            receiver.failing()
        stats = alerts.run_once()
        assert stats is not None and stats.delivered == 0
        clock.advance(60)
    assert receiver.acknowledged == []
    assert receiver.attempts > 0  # it was asked while failing
    pending = store.alerts.messages(limit=10, undelivered=True)
    # A run tries a destination until its first failure: the oldest messages have been tried.
    assert len(pending) == 4 and any(d[4] == "HTTP 503" for m in pending for d in m.deliveries)
    assert all("secret-token" not in (d[4] or "") for m in pending for d in m.deliveries)

    receiver.up()
    for _ in range(6):  # long enough for the longest backoff (retry_max_s) to pass
        alerts.run_once()
        clock.advance(60)
    assert store.alerts.messages(limit=10, undelivered=True) == []

    got = receiver.acknowledged
    uids = [r.headers[DELIVERY_HEADER] for r in got]
    assert len(uids) == len(set(uids)) == 4  # every message once
    for r in got:
        assert verify(SECRET, r.headers[SIGNATURE_HEADER], r.body)
        assert not verify("another-secret-0123456789", r.headers[SIGNATURE_HEADER], r.body)
        assert r.json["id"] == r.headers[DELIVERY_HEADER]
    by_key = {(r.json["kind"], r.json["batch"]): r.json for r in got}
    assert set(by_key) == {("needs_attention", "b1"), ("key_rejected", "b1"), ("needs_attention", "b2"),
                           ("audit_verify_failed", None)}  # fmt: skip
    attention = by_key[("needs_attention", "b1")]
    assert attention["count"] == 2
    assert {item["party_id"] for item in attention["items"]} == {party(0), party(1)}
    assert "PSB answered 500 three times" in attention["items"][0]["summary"]
    assert attention["link"] == "https://console.example/batch?name=b1&state=needs_attention"

    # A restart: a new process (store and pipeline) on the same database repeats nothing.
    again = Alerts(store=make_store(), settings=settings, clock=clock, owner="w2")
    for _ in range(3):
        stats = again.run_once()
        assert stats is not None and (stats.produced, stats.messages, stats.delivered) == (0, 0, 0)
        clock.advance(600)
    assert len(receiver.acknowledged) == 4

    # ... and what happens after the restart is alerted on once.
    move(again.store, range(3, 4), State.NEEDS_ATTENTION)
    again.run_once()
    clock.advance(61)
    again.run_once()
    assert len(receiver.acknowledged) == 5
    assert receiver.acknowledged[-1].json["items"][0]["party_id"] == party(3)


def test_500_failures_in_a_minute_are_one_message(store, clock, receiver):
    receiver.up()
    alerts = Alerts(store=store, settings=alert_settings(receiver), clock=clock, owner="w1")
    import_parties(store, "big", 0, 500)
    for start in range(0, 500, 100):  # 500 parties fail over 50 seconds; the producer runs every 10 s
        move(store, range(start, start + 100), State.NEEDS_ATTENTION, error="E_TIMEOUT")
        alerts.run_once()
        clock.advance(10)
    assert receiver.acknowledged == []  # the window (60 s from the first) is still open
    clock.advance(15)
    stats = alerts.run_once()
    assert stats is not None and stats.messages == 1 and stats.delivered == 1
    (message,) = receiver.acknowledged
    body = message.json
    assert body["count"] == 500 and body["kind"] == "needs_attention" and body["batch"] == "big"
    assert len(body["items"]) == 20 and body["more"] == 480
    assert body["title"] == "500 parties need attention in batch big"
    assert "... and 480 more" in body["text"]
    # A single failure later goes out alone, after its own window.
    import_parties(store, "big", 600, 1)
    move(store, range(600, 601), State.NEEDS_ATTENTION)
    alerts.run_once()
    clock.advance(61)
    alerts.run_once()
    assert len(receiver.acknowledged) == 2 and receiver.acknowledged[1].json["count"] == 1
    assert receiver.acknowledged[1].json["title"] == "1 party needs attention in batch big"


def test_a_batch_completed_is_told_once(store, clock, receiver):
    receiver.up()
    alerts = Alerts(store=store, settings=alert_settings(receiver, digest_s=0.0), clock=clock, owner="w1")
    import_parties(store, "small", 0, 3, state=State.PERMISSIONS_SET)
    move(store, range(0, 2), State.COMPLETED)
    alerts.run_once()
    assert receiver.acknowledged == []  # one migration is still open
    move(store, range(2, 3), State.CANCELLED)
    alerts.run_once()
    alerts.run_once()
    (message,) = receiver.acknowledged
    assert message.json["kind"] == "batch_completed" and message.json["title"] == "batch small completed"
    assert message.json["items"][0]["summary"] == "batch small: 1 cancelled, 2 completed"
