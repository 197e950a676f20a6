"""The console in headless Chromium (Debian's package, driven by Playwright), against
`peppol-migrate serve` as a process over a database the CLI filled and ran.

A person logs in, opens the batch, filters it to needs_attention, retries one party with its
row's button and the rest in bulk, supplies a key for a rejected party through the form; the
party's audit timeline shows the person as the actor. A viewer cannot act (403), anonymous
requests are refused (a redirect to the login page, 401 from the API), and a form posted without
its CSRF token is refused with nothing changed. Without Chromium or Playwright the test skips,
except under CI=true where it fails.
"""

from __future__ import annotations

import re

import pytest

from migration_engine.sandbox import SandboxConfig, SandboxServer
from tests.support import engine_env, kvk, seed_batch
from tests.support.cli import as_json, peppol_migrate
from tests.support.console import PASSWORDS, chromium_or_skip, console_env, playwright_or_skip, serving

BATCH = "spring <b>wave</b>"  # markup in a name stays text
pytestmark = pytest.mark.xdist_group("console_browser")


def _login(page, url: str, name: str) -> None:
    page.goto(f"{url}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", PASSWORDS[name])
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/batches")


def _states(env, folder) -> dict[str, int]:
    data = as_json(peppol_migrate("status", "--batch", BATCH, "--json", env=env, cwd=folder))
    return {s: n for d in data["by_direction"].values() for s, n in d.items() if n}


def test_an_operator_works_the_needs_attention_queue_in_the_browser(tmp_path):
    browser_path = chromium_or_skip()
    sync_playwright = playwright_or_skip()
    with SandboxServer(SandboxConfig()) as sandbox:
        env = {**engine_env(f"sqlite:///{tmp_path / 'console.db'}", sandbox.url), **console_env(tmp_path)}
        rejected = kvk(700)
        unknown = [kvk(710 + i) for i in range(3)]  # outbound, not at eConnect: needs_attention
        batch_file = tmp_path / "batch.csv"
        seed_batch(sandbox.model, batch_file, inbound=[rejected], wrong_keys=[rejected])
        with batch_file.open("a", encoding="utf-8") as fh:
            for party in unknown:
                fh.write(f"{party},from-econnect,,,Name {party},provider-b\n")
        assert peppol_migrate("db", "upgrade", env=env, cwd=tmp_path).returncode == 0
        assert peppol_migrate("import", str(batch_file), "--batch", BATCH, env=env, cwd=tmp_path).returncode == 0
        run = peppol_migrate("run", "--until-idle", env=env, cwd=tmp_path, timeout=120)
        assert run.returncode in (0, 4), run.stderr
        assert _states(env, tmp_path) == {"needs_attention": 3, "key_rejected": 1}
        good_key = sandbox.model.provider_prepare("provider-b", rejected)

        with serving(env, tmp_path) as served, sync_playwright() as pw:
            url = served.url
            browser = pw.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            try:
                # --- anonymous: pages redirect to the login page, the API answers 401 ---------
                anonymous = browser.new_context()
                r = anonymous.request.get(f"{url}/batches", max_redirects=0)
                assert r.status == 303 and r.headers["location"].startswith("/login")
                assert anonymous.request.get(f"{url}/api/v1/batches").status == 401
                r = anonymous.request.post(f"{url}/actions", form={"action": "retry", "ids": "1"}, max_redirects=0)
                assert r.status == 303 and r.headers["location"].startswith("/login")
                page = anonymous.new_page()
                page.goto(f"{url}/attention")
                assert page.url.startswith(f"{url}/login")
                page.fill("input[name=name]", "alice")
                page.fill("input[name=password]", "wrong-password")
                page.click("button[type=submit]")
                assert "wrong name or password" in page.inner_text("#login-error")
                anonymous.close()

                # --- the operator --------------------------------------------------------------
                context = browser.new_context()
                page = context.new_page()
                _login(page, url, "alice")
                cookie = next(c for c in context.cookies() if c["name"] == "pm_session")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
                page.click(f"#batches a:text-is('{BATCH}')")
                assert page.inner_text("#batch-name") == BATCH
                assert page.locator("svg.chart polyline").count() >= 1
                page.select_option("#filter-state", "needs_attention")
                page.click("#apply-filters")
                rows = page.locator("#migrations tbody tr[data-party]")
                assert rows.count() == 3
                assert {rows.nth(i).get_attribute("data-state") for i in range(3)} == {"needs_attention"}

                # a form without its CSRF token is refused, nothing changes
                first_id = page.locator("#migrations input[name=ids]").first.get_attribute("value")
                r = context.request.post(f"{url}/actions", form={"action": "retry", "ids": first_id})
                assert r.status == 403 and "CSRF" in r.text()
                assert _states(env, tmp_path) == {"needs_attention": 3, "key_rejected": 1}

                # retry one party with its row's button
                one = rows.first.get_attribute("data-party")
                rows.first.locator("button.retry-one").click()
                page.wait_for_load_state()
                assert f"{one}: retry done" in page.inner_text("main")
                rows = page.locator("#migrations tbody tr[data-party]")
                assert rows.count() == 2

                # bulk-retry the rest
                page.check("input.tick-all")
                page.click("#bulk-retry")
                page.wait_for_load_state()
                assert page.locator("p.flash.ok").count() == 2
                assert page.locator("#migrations tbody tr[data-party]").count() == 0
                states = _states(env, tmp_path)
                assert states.get("needs_attention", 0) == 0 and states["key_rejected"] == 1

                # supply a key through the queue's form
                page.goto(f"{url}/attention")
                assert page.locator(f"#migrations tr[data-party='{rejected}']").count() == 1
                page.fill("#key-party", rejected)
                page.fill("#key-value", good_key)
                page.click("#key-submit")
                page.wait_for_load_state()
                assert f"{rejected}: key set done, now key_issued" in page.inner_text("main")
                assert good_key not in page.content()

                # the audit shows the person as the actor; the key only masked
                page.goto(f"{url}/party/{one}")
                assert "console:alice" in page.locator("table.timeline").inner_text()
                page.goto(f"{url}/party/{rejected}")
                timeline = page.locator("table.timeline").inner_text()
                assert "console:alice" in timeline and good_key not in timeline
                shown = as_json(peppol_migrate("show", rejected, "--json", env=env, cwd=tmp_path))
                ops = [e for e in shown["migrations"][0]["events"] if e["kind"] == "operator"]
                assert ops and ops[-1]["actor"] == "console:alice" and ops[-1]["detail"]["action"] == "key set"
                assert re.fullmatch(r".{2}….{2}", ops[-1]["detail"]["key"])
                csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
                context.close()

                # --- a viewer sees but cannot act ---------------------------------------------
                viewer = browser.new_context()
                page = viewer.new_page()
                _login(page, url, "victor")
                page.goto(f"{url}/attention")
                assert page.locator("#bulk-retry").count() == 0 and page.locator("#key-form").count() == 0
                token = page.locator("input[name=csrf_token]").first.get_attribute("value")
                assert token and token != csrf
                form = {"action": "cancel", "ids": first_id, "csrf_token": token}
                r = viewer.request.post(f"{url}/actions", form=form)
                assert r.status == 403 and "viewer" in r.text()
                r = viewer.request.post(f"{url}/key", form={"party": rejected, "key": good_key, "csrf_token": token})
                assert r.status == 403
                assert viewer.request.get(f"{url}/import").status == 403
                viewer.close()
            finally:
                browser.close()
        states = _states(env, tmp_path)
        assert "cancelled" not in states and states.get("key_issued") == 1
