"""The webhook signature a receiver checks, and a digest's body."""

from __future__ import annotations

from datetime import UTC, datetime

from migration_engine.engine.alerts import message_body
from migration_engine.engine.alerts_send import sign, verify, webhook_destination, webhook_label
from migration_engine.store.alerts import AlertRow

AT = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_a_signature_verifies_only_for_its_body_and_secret():
    header = sign("s" * 20, 1_700_000_000, b'{"a":1}')
    assert header.startswith("t=1700000000,v1=")
    assert verify("s" * 20, header, b'{"a":1}')
    assert not verify("s" * 20, header, b'{"a":2}')
    assert not verify("t" * 20, header, b'{"a":1}')
    assert not verify("s" * 20, "t=x,v1=00", b'{"a":1}')


def test_a_webhook_is_named_without_its_url():
    url = "https://hooks.example/services/T000/B000/secret-token"
    assert "secret-token" not in webhook_destination(url) and "secret-token" not in webhook_label(url)
    assert webhook_label(url) == "https://hooks.example/…"


def test_a_digest_counts_and_names_the_first_parties():
    rows = [AlertRow(i, AT, AT, "key_expired", "key_expired:b", "b", f"p{i}", i, "key_delivered -> key_expired")
            for i in range(5)]  # fmt: skip
    kind, body = message_body(rows, first=2)
    assert kind == "key_expired" and body["count"] == 5 and body["more"] == 3
    assert [item["party_id"] for item in body["items"]] == ["p0", "p1"]
    assert body["title"] == "5 parties' keys expired before a takeover in batch b"
    assert body["link"] == "/batch?name=b&state=key_expired"
