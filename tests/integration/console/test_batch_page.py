"""The batch page's preflight-class filter (console/pages.py, templates/batch.html) through
Starlette's TestClient over a real store on SQLite and PostgreSQL: the form offers the classes,
the table keeps only the chosen class (with the other filters too), its next page keeps the
filter, a class that is not one is 400, and without eConnect's SMP configured there is no such
filter (503 naming the setting when asked anyway). No snapshot is stored, so each party is
classified on its identifier alone: a KVK number that is too short is ``id_suspect``."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from migration_engine.clock import ManualClock
from migration_engine.console.pages import PAGE_SIZE
from migration_engine.engine.runtime import Runtime
from migration_engine.machine import Direction, State
from migration_engine.store import NewMigration
from tests.support.console_api import VIEWER_TOKEN, bearer, console_app, console_runtime
from tests.support.records import change, party

VIEWER = bearer(VIEWER_TOKEN)
READY = [party(i) for i in range(3)]  # 0106:2000000i: a well-formed KVK number
SUSPECT = [f"0106:{1000 + i}" for i in range(PAGE_SIZE + 5)]  # too short for a KVK number


def rows(page: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r'<tr data-party="([^"]+)"', page)]


def next_url(page: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" id="next-page">', page)
    return html.unescape(found.group(1)) if found else None


def seed(rt: Runtime) -> None:
    rt.store.upgrade()
    items = [NewMigration(party_id=p, direction=Direction.TO_ECONNECT, state=State.REQUESTED) for p in READY + SUSPECT]
    rt.store.add_migrations(batch_name="b", items=items, actor="tester")


@pytest.fixture
def rt(db_url: str, clock: ManualClock) -> Iterator[Runtime]:
    runtime = console_runtime(db_url, clock)
    seed(runtime)
    yield runtime
    runtime.close()


@pytest.fixture
def client(rt: Runtime) -> Iterator[TestClient]:
    with TestClient(console_app(rt)) as c:
        yield c


def test_the_batch_page_filters_by_preflight_class(client: TestClient, rt: Runtime) -> None:
    everyone = client.get("/batch?name=b", headers=VIEWER)
    assert everyone.status_code == 200, everyone.text
    assert 'name="plan_class"' in everyone.text and '<option value="id_suspect" >' in everyone.text
    assert len(rows(everyone.text)) == PAGE_SIZE and 'id="plan-class-note"' not in everyone.text

    ready = client.get("/batch?name=b&plan_class=ready", headers=VIEWER)
    assert ready.status_code == 200, ready.text
    assert rows(ready.text) == READY and next_url(ready.text) is None
    assert '<option value="ready" selected>' in ready.text and 'id="plan-class-note"' in ready.text

    suspect = client.get("/batch?name=b&plan_class=id_suspect", headers=VIEWER)
    first = rows(suspect.text)
    assert first == SUSPECT[:PAGE_SIZE]
    more = next_url(suspect.text)
    assert more is not None and "plan_class=id_suspect" in more
    rest = client.get(more, headers=VIEWER)
    assert rows(rest.text) == SUSPECT[PAGE_SIZE:] and next_url(rest.text) is None

    # With the state filter too: both must hold.
    change(rt.store, 0, new_state=State.NEEDS_ATTENTION)
    both = client.get("/batch?name=b&state=needs_attention&plan_class=ready", headers=VIEWER)
    assert rows(both.text) == [party(0)]
    none = client.get("/batch?name=b&state=needs_attention&plan_class=id_suspect", headers=VIEWER)
    assert rows(none.text) == []


def test_a_class_that_is_not_one_is_refused(client: TestClient) -> None:
    bad = client.get("/batch?name=b&plan_class=bogus", headers=VIEWER)
    assert bad.status_code == 400
    text = html.unescape(bad.text)
    assert "plan_class 'bogus' is not a preflight class" in text and "id_suspect" in text


def test_without_econnects_smp_there_is_no_class_filter(db_url: str, clock: ManualClock) -> None:
    runtime = console_runtime(db_url, clock, PEPPOL_MIGRATE_VERIFY__ECONNECT_SMP_HOST="")
    seed(runtime)
    try:
        with TestClient(console_app(runtime)) as c:
            page = c.get("/batch?name=b", headers=VIEWER)
            assert page.status_code == 200 and 'name="plan_class"' not in page.text
            asked = c.get("/batch?name=b&plan_class=ready", headers=VIEWER)
            assert asked.status_code == 503 and "econnect_smp_host" in asked.text
    finally:
        runtime.close()
