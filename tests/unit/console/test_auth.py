"""The console's access control: hashed secrets, users from a file and the environment, signed
sessions that expire, CSRF, roles; and the app refusing anonymous requests."""

from __future__ import annotations

import io
import sys

import pytest
from starlette.testclient import TestClient

from migration_engine.cli.main import main
from migration_engine.console.app import create_app
from migration_engine.console.auth import Auth, Principal, hash_secret, verify_secret
from migration_engine.engine.runtime import Runtime
from migration_engine.errors import ConfigError
from migration_engine.settings import ConsoleSettings, Settings, load_settings, with_overrides
from tests.support.console import PASSWORDS, SESSION_KEY, TOKEN, users_file


def test_a_hash_verifies_its_secret_only_and_never_holds_it():
    stored = hash_secret("correct horse")
    assert stored.startswith("scrypt$") and "correct horse" not in stored
    assert verify_secret("correct horse", stored)
    assert not verify_secret("correct horsE", stored)
    assert not verify_secret("correct horse", "correct horse")  # a plain secret is no hash
    assert hash_secret("x" * 8) != hash_secret("x" * 8)  # salted


def _auth(tmp_path, clock, **more) -> Auth:
    return Auth(ConsoleSettings(users_file=str(users_file(tmp_path)), session_key=SESSION_KEY, **more), clock=clock)


def test_sessions_are_signed_and_expire(tmp_path, clock):
    auth = _auth(tmp_path, clock, session_minutes=30)
    account = auth.check_password("alice", PASSWORDS["alice"])
    assert account is not None and account.role == "operator"
    assert auth.check_password("alice", "nope") is None and auth.check_password("mallory", "x") is None
    cookie, csrf = auth.new_session(account)
    who = auth.session(cookie)
    assert who == Principal("alice", "operator", "session", csrf) and who.actor == "console:alice"
    body, _, mac = cookie.partition(".")
    forged = body.replace(body[-2], "A" if body[-2] != "A" else "B") + "." + mac
    assert auth.session(forged) is None
    other = Auth(ConsoleSettings(users_file=str(tmp_path / "users.toml"), session_key="k" * 40), clock=clock)
    assert other.session(cookie) is None  # another key
    clock.advance(29 * 60)
    assert auth.session(cookie) is not None
    clock.advance(2 * 60)
    assert auth.session(cookie) is None


def test_users_come_from_the_environment_too_and_bad_entries_are_refused(tmp_path, clock):
    entry = f"eve:admin:{hash_secret('eve-password')}"
    env = {"PEPPOL_MIGRATE_CONSOLE__USERS": entry, "PEPPOL_MIGRATE_CONSOLE__SESSION_KEY": SESSION_KEY}
    settings = load_settings(env=env)
    auth = Auth(settings.console, clock=clock)
    assert auth.check_password("eve", "eve-password") is not None
    with pytest.raises(ConfigError, match="scrypt hash"):
        Auth(ConsoleSettings(users=("eve:admin:plain-password",), session_key=SESSION_KEY), clock=clock)
    with pytest.raises(ConfigError, match="role must be one of viewer, operator, admin"):
        Auth(ConsoleSettings(users=(f"eve:root:{hash_secret('x' * 8)}",), session_key=SESSION_KEY), clock=clock)
    assert "session_key" in (Auth.problem(ConsoleSettings(users=(entry,))) or "")
    assert "users" in (Auth.problem(ConsoleSettings(session_key=SESSION_KEY)) or "")


def test_the_session_key_is_a_secret_and_checked(tmp_path):
    config = tmp_path / "c.toml"
    config.write_text(f'[console]\nsession_key = "{SESSION_KEY}"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="is a secret"):
        load_settings(config, env={})
    with pytest.raises(ConfigError, match="at least 32"):
        with_overrides(Settings(), console={"session_key": "short"})


@pytest.fixture
def client(tmp_path, clock):
    settings = load_settings(
        env={
            "PEPPOL_MIGRATE_DATABASE__URL": f"sqlite:///{tmp_path / 'c.db'}",
            "PEPPOL_MIGRATE_CONSOLE__USERS_FILE": str(users_file(tmp_path)),
            "PEPPOL_MIGRATE_CONSOLE__SESSION_KEY": SESSION_KEY,
        }
    )
    rt = Runtime(settings, clock=clock)
    rt.store.upgrade()
    with TestClient(create_app(rt), base_url="http://127.0.0.1", follow_redirects=False) as c:
        yield c
    rt.close()


def _login(client, name):
    page = client.get("/login")
    token = page.cookies.get("pm_login_csrf") or client.cookies.get("pm_login_csrf")
    r = client.post("/login", data={"name": name, "password": PASSWORDS[name], "csrf_token": token, "next": "/"})
    assert r.status_code == 303
    return r


def test_anonymous_requests_are_refused(client):
    r = client.get("/batches")
    assert r.status_code == 303 and r.headers["location"] == "/login?next=/batches"
    assert client.get("/live.json").status_code == 303
    assert client.post("/key", data={"party": "x", "key": "y"}).status_code == 303
    assert client.get("/api/v1/batches").status_code == 401
    assert client.get("/api/v1/batches", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/v1/batches", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_the_login_form_needs_its_csrf_token_and_the_next_page_stays_on_the_site(client):
    client.get("/login")
    r = client.post("/login", data={"name": "alice", "password": PASSWORDS["alice"]})
    assert r.status_code == 403
    token = client.cookies.get("pm_login_csrf")
    r = client.post(
        "/login",
        data={"name": "alice", "password": PASSWORDS["alice"], "csrf_token": token, "next": "//evil.example/"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert "httponly" in r.headers["set-cookie"].lower() and "samesite=strict" in r.headers["set-cookie"].lower()


def test_roles_and_csrf_on_the_pages(client):
    _login(client, "victor")
    assert client.get("/batches").status_code == 200
    assert client.get("/import").status_code == 403
    assert client.post("/audit/verify", data={}).status_code == 403
    client.cookies.clear()
    _login(client, "root")
    assert client.post("/audit/verify", data={}).status_code == 403  # no CSRF token
    page = client.get("/audit").text
    token = page.split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/audit/verify", data={"csrf_token": token}).status_code == 303
    assert "verified" in client.get("/audit").text
    assert "default-src 'self'" in client.get("/audit").headers["content-security-policy"]


def test_serve_refuses_to_start_without_a_session_key_or_users(tmp_path, monkeypatch, capsys):
    for name in [n for n in __import__("os").environ if n.startswith("PEPPOL_MIGRATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PEPPOL_MIGRATE_DATABASE__URL", f"sqlite:///{tmp_path / 's.db'}")
    monkeypatch.setenv("PEPPOL_MIGRATE_CONSOLE__USERS_FILE", str(users_file(tmp_path)))
    assert main(["serve"]) == 2
    assert "PEPPOL_MIGRATE_CONSOLE__SESSION_KEY" in capsys.readouterr().err
    monkeypatch.delenv("PEPPOL_MIGRATE_CONSOLE__USERS_FILE")
    monkeypatch.setenv("PEPPOL_MIGRATE_CONSOLE__SESSION_KEY", SESSION_KEY)
    assert main(["serve"]) == 2
    assert "console.users_file" in capsys.readouterr().err


def test_hash_password_reads_stdin_and_prints_only_the_hash(monkeypatch, capsys):
    class Stdin(io.TextIOWrapper):
        def isatty(self) -> bool:
            return False

    monkeypatch.setattr(sys, "stdin", Stdin(io.BytesIO(b"a-long-password\n")))
    assert main(["serve", "--hash-password"]) == 0
    out = capsys.readouterr()
    stored = out.out.strip()
    assert verify_secret("a-long-password", stored) and "a-long-password" not in out.out + out.err
