"""The key handoff: the https POST to the new provider (``KeyPoster``, not the PSB client) and
the outbox file."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import httpx
import pytest

from migration_engine.clock import ManualClock
from migration_engine.engine.handoff import (
    HttpsHandoff,
    OutboxHandoff,
    UnsafeOutboxFile,
    make_handoff,
    outbox_file,
)
from migration_engine.errors import PsbAuthError, PsbPermanentError, PsbTransientError
from migration_engine.keys import mask
from migration_engine.psb.client import ApiCall
from migration_engine.psb.key_poster import KeyPoster
from migration_engine.settings import Settings, with_overrides

KEY = "Ab12@#cdEF34$%xy"
PARTY = "0106:1"


def poster(handler: httpx.MockTransport | None = None, status: int = 204) -> KeyPoster:
    return KeyPoster(transport=handler or httpx.MockTransport(lambda r: httpx.Response(status)), clock=ManualClock())


def test_the_post_carries_the_key_and_no_psb_credentials() -> None:
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text="thanks")

    calls: list[ApiCall] = []
    handoff = HttpsHandoff("https://new.example/{new_provider}/keys?token=t0k", poster(httpx.MockTransport(route)))
    where = handoff.recording(calls.append).deliver(
        batch_name="b", party_id=PARTY, key=KEY, issued_at=None, new_provider="provider-b"
    )
    (request,) = seen
    assert str(request.url) == "https://new.example/provider-b/keys?token=t0k"
    assert request.method == "POST" and json.loads(request.content) == {"partyId": PARTY, "migrationKey": KEY}
    assert "authorization" not in request.headers and "subscription-key" not in request.headers
    assert calls == [ApiCall("POST", "https://new.example/provider-b/keys", PARTY, 200, 0.0, None, None)]
    assert where == {"handoff": "https", "endpoint": "https://new.example/provider-b/keys"}  # no query, no token
    handoff.close()


@pytest.mark.parametrize(
    ("answer", "error", "code"),
    [
        (httpx.Response(503), PsbTransientError, "HANDOFF503.JSON02"),
        (httpx.Response(429, headers={"Retry-After": "7"}), PsbTransientError, "HANDOFF429.JSON02"),
        (httpx.Response(401), PsbAuthError, "HANDOFF401.JSON02"),
        (httpx.Response(400, json={"code": "BAD", "message": f"we got {KEY}, a bad key"}), PsbPermanentError, "BAD"),
    ],
)
def test_error_answers_are_classified_as_the_psbs_and_never_show_the_key(
    answer: httpx.Response, error: type[Exception], code: str
) -> None:
    calls: list[ApiCall] = []
    view = poster(httpx.MockTransport(lambda r: answer)).recording(calls.append)
    with pytest.raises(error) as caught:
        view.post("https://new.example/keys", party_id=PARTY, key=KEY)
    assert getattr(caught.value, "code", None) == code and KEY not in str(caught.value)
    assert [(c.status, c.error_code) for c in calls] == [(answer.status_code, code)]
    if answer.status_code == 429:
        assert getattr(caught.value, "retry_after_s", None) == 7


@pytest.mark.parametrize(
    ("exc", "code"),
    [(httpx.ReadTimeout("slow"), "TIMEOUT"), (httpx.ConnectError(f"refused {KEY}"), "CONNECTION")],
)
def test_no_answer_is_transient(exc: Exception, code: str) -> None:
    def route(request: httpx.Request) -> httpx.Response:
        raise exc

    calls: list[ApiCall] = []
    view = poster(httpx.MockTransport(route)).recording(calls.append)
    with pytest.raises(PsbTransientError) as caught:
        view.post("https://new.example/k", party_id=PARTY, key=KEY)
    assert caught.value.code == code and KEY not in str(caught.value)
    assert [(c.status, c.error_code) for c in calls] == [(None, code)]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://new.example/keys", False),
        ("ftp://new.example/keys", False),
        ("http://127.0.0.1:8765/handoff", True),
        ("http://localhost:8765/handoff", True),
    ],
)
def test_the_post_needs_https_except_on_loopback(url: str, allowed: bool) -> None:
    seen: list[httpx.Request] = []

    def route(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(204)

    client = poster(httpx.MockTransport(route))
    if allowed:
        client.post(url, party_id=PARTY, key=KEY)
        assert len(seen) == 1
    else:
        with pytest.raises(PsbPermanentError) as caught:
            client.post(url, party_id=PARTY, key=KEY)
        assert caught.value.code == "HANDOFF.URL01" and KEY not in str(caught.value)
        assert seen == []


def test_a_key_echoed_by_the_endpoint_is_masked() -> None:
    answer = httpx.Response(422, json={"message": f"key {KEY} already used"})
    with pytest.raises(PsbPermanentError) as caught:
        poster(httpx.MockTransport(lambda r: answer)).post("https://new.example/keys", party_id=PARTY, key=KEY)
    assert KEY not in str(caught.value) and mask(KEY) in str(caught.value)
    assert caught.value.code == "HANDOFF422"


def test_a_malformed_url_is_refused_before_sending() -> None:
    with pytest.raises(PsbPermanentError) as caught:
        poster().post("https://new.example:port/keys", party_id=PARTY, key=KEY)
    assert caught.value.code == "HANDOFF.URL01"


def test_a_view_reports_and_the_original_does_not() -> None:
    original = poster()
    calls: list[ApiCall] = []
    original.recording(calls.append).post("https://new.example/keys", party_id=PARTY, key=KEY)
    original.post("https://new.example/keys", party_id=PARTY, key=KEY)
    assert len(calls) == 1
    assert KEY not in repr(original)


def test_the_outbox_appends_to_a_private_file_per_batch(tmp_path: Path) -> None:
    outbox = OutboxHandoff(tmp_path / "out")
    calls: list[ApiCall] = []
    view = outbox.recording(calls.append)
    for party in ("0106:1", "0106:2"):
        where = view.deliver(batch_name="my batch", party_id=party, key=KEY, issued_at=None, new_provider="b")
    path = Path(where["file"])
    assert re.fullmatch(r"my_batch\.b\.[0-9a-f]{12}\.keys\.csv", path.name), path.name
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and list(path.parent.iterdir()) == [path]
    assert path.read_text().splitlines() == [
        "party_id,migration_key,issued_at,new_provider",
        f"0106:1,{KEY},,b",
        f"0106:2,{KEY},,b",
    ]
    assert calls == []  # a file, no HTTP exchange


def test_make_handoff_follows_the_settings(tmp_path: Path) -> None:
    clock = ManualClock()
    https = with_overrides(Settings(), handoff={"mode": "https", "endpoint": "https://new.example/keys"})
    built = make_handoff(https, clock=clock)
    assert isinstance(built, HttpsHandoff)
    built.close()
    outbox = with_overrides(Settings(), handoff={"mode": "outbox", "outbox_dir": str(tmp_path)})
    assert isinstance(make_handoff(outbox, clock=clock), OutboxHandoff)
    assert make_handoff(with_overrides(Settings(), handoff={"mode": "manual"}), clock=clock) is None


def test_batches_whose_names_read_alike_and_providers_never_share_a_file(tmp_path: Path) -> None:
    """``a/b``, ``a b`` and ``a_b`` all read ``a_b`` once made safe for a file name: each batch,
    and each new provider in a batch, still gets a file of its own, so one provider's file
    never holds another's keys."""
    outbox = OutboxHandoff(tmp_path)
    deliveries = [("a/b", "p1"), ("a b", "p1"), ("a_b", "p1"), ("a_b", "p2"), (None, "p1"), ("no-batch", "p1")]
    files = [
        Path(outbox.deliver(batch_name=b, party_id=f"0106:{i}", key=KEY, issued_at=None, new_provider=p)["file"])
        for i, (b, p) in enumerate(deliveries)
    ]
    assert len(set(files)) == len(deliveries) == len(list(tmp_path.iterdir()))
    for i, path in enumerate(files):  # each holds its one row, under its own header
        assert path.read_text().splitlines()[1:] == [f"0106:{i},{KEY},,{deliveries[i][1]}"]


def test_a_planted_symlink_is_refused_and_nothing_is_written_through_it(tmp_path: Path) -> None:
    outbox_dir = tmp_path / "out"
    outbox_dir.mkdir()
    elsewhere = tmp_path / "world-readable.csv"
    elsewhere.write_text("")
    elsewhere.chmod(0o644)
    path = outbox_file(outbox_dir, "spring", "b")
    path.symlink_to(elsewhere)
    dangling = outbox_file(outbox_dir, "summer", "b")
    dangling.symlink_to(tmp_path / "not-yet")  # O_CREAT would otherwise create the target
    outbox = OutboxHandoff(outbox_dir)
    for batch, link in (("spring", path), ("summer", dangling)):
        with pytest.raises(UnsafeOutboxFile) as caught:
            outbox.deliver(batch_name=batch, party_id=PARTY, key=KEY, issued_at=None, new_provider="b")
        assert caught.value.code == "HANDOFF.FILE01" and "symbolic link" in str(caught.value)
        assert str(link) in str(caught.value) and KEY not in str(caught.value)
    assert elsewhere.read_text() == "" and stat.S_IMODE(elsewhere.stat().st_mode) == 0o644
    assert not (tmp_path / "not-yet").exists()


def test_a_hard_link_or_a_fifo_in_the_outbox_is_refused(tmp_path: Path) -> None:
    outbox_dir = tmp_path / "out"
    outbox_dir.mkdir()
    other = tmp_path / "other.csv"
    other.write_text("")
    outbox_file(outbox_dir, "linked", "b").hardlink_to(other)
    os.mkfifo(outbox_file(outbox_dir, "piped", "b"))
    outbox = OutboxHandoff(outbox_dir)
    for batch, why in (("linked", "2 hard links"), ("piped", "not a regular file")):
        with pytest.raises(UnsafeOutboxFile, match=why):  # and the FIFO does not hang the worker
            outbox.deliver(batch_name=batch, party_id=PARTY, key=KEY, issued_at=None, new_provider="b")
    assert other.read_text() == ""
