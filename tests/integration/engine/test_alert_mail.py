"""Alerts by e-mail, on SQLite and PostgreSQL, to an SMTP receiver over loopback
(tests/support/smtp.py): a digest is one e-mail whose Message-ID is the delivery's id; a
receiver that is down, then refusing, gets each message exactly once after it comes back, and
an e-mail destination that is down holds up no webhook. Manual clock throughout."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migration_engine.engine.alerts import Alerts, RunStats
from migration_engine.engine.alerts_send import DELIVERY_HEADER, EMAIL
from migration_engine.machine import Direction, State
from migration_engine.settings import Settings, with_overrides
from migration_engine.store import NewMigration
from tests.support.records import add, change, party
from tests.support.smtp import SmtpReceiver
from tests.support.webhooks import Receiver

TO = ("ops@example.test", "desk@example.test")
FROM = "peppol-migrate@example.test"


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    r = SmtpReceiver()
    yield r
    r.down()


def mail_settings(smtp: SmtpReceiver, **alerts: object) -> Settings:
    body = {"smtp_host": "127.0.0.1", "smtp_port": smtp.port, "smtp_starttls": False, "smtp_from": FROM,
            "smtp_to": TO, "timeout_s": 5.0, "digest_s": 60.0, "retry_base_s": 30.0, "retry_max_s": 240.0,
            "console_url": "https://console.example", **alerts}  # fmt: skip
    return with_overrides(Settings(), alerts=body)


def attention(store, batch: str, ids: range) -> None:
    """Import the parties ``ids`` into ``batch`` (requested) and move each to needs_attention."""
    items = [NewMigration(party_id=party(i), direction=Direction.TO_ECONNECT, state=State.REQUESTED) for i in ids]
    add(store, batch, *items)
    for i in ids:
        change(store, i, new_state=State.NEEDS_ATTENTION)


def test_a_digest_is_one_email_with_the_delivery_id(store, clock, smtp):
    smtp.up()
    alerts = Alerts(store=store, settings=mail_settings(smtp), clock=clock, owner="w1")
    attention(store, "b1", range(0, 3))
    stats = alerts.run_once()
    assert stats is not None and stats.produced == 3 and stats.messages == 0
    assert smtp.accepted == []  # the digest's window is still open

    clock.advance(61)
    stats = alerts.run_once()
    assert stats is not None and (stats.messages, stats.delivered, stats.failed) == (1, 1, 0)
    (mail,) = smtp.accepted
    [stored] = store.alerts.messages(limit=10)
    assert stored.deliveries[0][0] == EMAIL and stored.deliveries[0][3] is not None  # delivered
    message = mail.message
    assert message["Message-ID"] == f"<{stored.uid}@peppol-migrate>"
    assert message["Subject"] == "[peppol-migrate] 3 parties need attention in batch b1"
    assert message["From"] == FROM and message["To"] == ", ".join(TO)
    assert (mail.mail_from, mail.rcpt_to) == (FROM, list(TO))
    lines = mail.body.splitlines()
    assert lines[0] == "3 parties need attention in batch b1:"
    assert set(lines[1:4]) == {f"- {party(i)}: requested -> needs_attention" for i in range(3)}
    assert lines[-1] == "console: https://console.example/batch?name=b1&state=needs_attention"

    # Nothing more to say: nothing more is sent.
    clock.advance(600)
    assert alerts.run_once() == RunStats()
    assert len(smtp.accepted) == 1


def test_a_receiver_down_then_refusing_gets_each_email_exactly_once(store, make_store, clock, smtp):
    settings = mail_settings(smtp)
    alerts = Alerts(store=store, settings=settings, clock=clock, owner="w1")
    attention(store, "b1", range(0, 2))
    attention(store, "b2", range(10, 11))
    alerts.run_once()
    clock.advance(61)

    for round_ in range(8):  # about eight minutes: refused (nothing listens), then 451 to DATA
        if round_ == 4:
            smtp.failing()
        stats = alerts.run_once()
        assert stats is not None and stats.delivered == 0
        clock.advance(60)
    assert smtp.accepted == [] and smtp.attempts > 0
    pending = store.alerts.messages(limit=10, undelivered=True)
    assert len(pending) == 2
    errors = {d[4] for m in pending for d in m.deliveries}
    assert "SMTP 451" in errors
    assert all(d[1] >= 1 for m in pending for d in m.deliveries)  # each was tried

    smtp.up()
    # A restart on the way: a new process (store and pipeline) on the same database.
    again = Alerts(store=make_store(), settings=settings, clock=clock, owner="w2")
    for _ in range(6):  # long enough for the longest backoff (retry_max_s) to pass
        again.run_once()
        clock.advance(60)
    assert store.alerts.messages(limit=10, undelivered=True) == []

    ids = [m.message["Message-ID"] for m in smtp.accepted]
    assert len(ids) == len(set(ids)) == 2  # each message exactly once
    assert {m.uid for m in store.alerts.messages(limit=10)} == {i[1 : -len("@peppol-migrate>")] for i in ids}
    subjects = sorted(m.message["Subject"] for m in smtp.accepted)
    assert subjects == [
        "[peppol-migrate] 1 party needs attention in batch b2",
        "[peppol-migrate] 2 parties need attention in batch b1",
    ]
    for _ in range(3):
        again.run_once()
        clock.advance(600)
    assert len(smtp.accepted) == 2


def test_email_down_holds_up_no_webhook(store, clock, smtp):
    hook = Receiver()
    hook.up()
    try:
        settings = mail_settings(smtp, webhooks=(hook.url,), webhook_secret="webhook-secret-for-tests-0123456789")
        alerts = Alerts(store=store, settings=settings, clock=clock, owner="w1")
        attention(store, "b1", range(0, 1))
        alerts.run_once()
        clock.advance(61)
        stats = alerts.run_once()
        assert stats is not None and (stats.delivered, stats.failed) == (1, 1)
        (posted,) = hook.acknowledged
        assert smtp.accepted == []
        [message] = store.alerts.messages(limit=10, undelivered=True)
        by_destination = {d[0]: d for d in message.deliveries}
        assert by_destination[EMAIL][3] is None and by_destination[EMAIL][4].startswith("SMTP failed:")
        assert "Connection" in by_destination[EMAIL][4] or "refused" in by_destination[EMAIL][4]

        smtp.up()
        clock.advance(31)
        alerts.run_once()
        (mail,) = smtp.accepted
        assert mail.message["Message-ID"] == f"<{posted.headers[DELIVERY_HEADER]}@peppol-migrate>"
        assert len(hook.acknowledged) == 1  # the webhook is not sent again
    finally:
        hook.down()
