"""The console's doors: signed sessions, CSRF tokens, login and logout, roles per route (a real state database)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from console_helpers import csrf as _csrf
from console_helpers import login as _login
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from ratchet.audit import read_entries
from ratchet.auth import create_key, revoke_keys
from ratchet.config import Settings
from ratchet.console import CONSOLE_ROLE, create_console_app
from ratchet.console.pages.login import safe_next
from ratchet.console.session import COOKIE, SessionSigner
from ratchet.store.db import StateDB


def test_sessions_cannot_be_forged_extended_or_replayed_after_expiry() -> None:
    signer = SessionSigner(b"s" * 32, ttl_s=60)
    cookie, session = signer.issue("abc123", now=1000.0)
    assert signer.read(cookie, now=1030.0) == session
    assert signer.read(cookie, now=1061.0) is None  # expired
    payload, tag = cookie.split(".")
    assert signer.read(f"{payload}.{tag[:-2]}xx", now=1030.0) is None  # tampered tag
    other, _ = SessionSigner(b"t" * 32, ttl_s=60).issue("abc123", now=1000.0)
    assert signer.read(other, now=1030.0) is None  # another secret's cookie
    for junk in (None, "", "x", "a.b.c", "#" * 2000):
        assert signer.read(junk) is None
    token = signer.csrf_token(session)
    altered = token[:-1] + ("B" if token.endswith("A") else "A")
    assert signer.csrf_ok(session, token) and not signer.csrf_ok(session, altered)
    assert not signer.csrf_ok(session, None) and not signer.csrf_ok(session, "")
    _, another = signer.issue("abc123")
    assert not signer.csrf_ok(another, token)  # a token is its session's only


def test_the_next_page_after_login_stays_on_the_console() -> None:
    assert safe_next("/ui/experiments/e1?x=1") == "/ui/experiments/e1?x=1"
    for bad in ("https://evil.example/ui", "//evil.example", "/ui\\..\\evil", None, "", "/v1/feedback"):
        assert safe_next(bad) == "/ui"


@pytest.fixture
def console(tmp_path: Any) -> Iterator[tuple[TestClient, StateDB, Settings]]:
    settings = Settings(home=tmp_path / "home")
    settings.auth.mode = "required"
    app = create_console_app(settings)
    with TestClient(app, base_url="http://testserver") as client, StateDB.connect(settings) as db:
        yield client, db, settings


def test_every_console_route_declares_its_role(console) -> None:
    client, _, _ = console
    routes = [r for r in client.app.routes if isinstance(r, APIRoute) and r.path.startswith("/ui")]
    assert {r.path for r in routes} >= {"/ui", "/ui/login", "/ui/logout", "/ui/static/{name}"}
    for route in routes:
        assert (route.openapi_extra or {}).get(CONSOLE_ROLE), f"{route.path} declares no role"


def test_login_with_a_key_then_pages_then_logout(console) -> None:
    client, db, settings = console
    first = client.get("/ui", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/ui/login?next=/ui"
    cookie = first.headers["set-cookie"]  # an anonymous session: its CSRF token guards the login form
    assert COOKIE in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    login_page = client.get("/ui/login")
    assert login_page.status_code == 200 and "API key" in login_page.text
    assert "default-src 'none'" in login_page.headers["content-security-policy"]
    assert "set-cookie" not in login_page.headers  # the same session

    wrong = _login(client, "rtk_000000000000_forged")
    assert wrong.status_code == 401 and "not valid" in wrong.text and "Traceback" not in wrong.text
    key, _ = create_key(db, "ana", ["read"], created_by="test")
    done = _login(client, key)
    assert done.status_code == 303 and done.headers["location"] == "/ui"
    assert key not in done.headers["set-cookie"]  # the cookie names a session, never the key
    overview = client.get("/ui")
    assert overview.status_code == 200 and "Live experiments" in overview.text and "ana" in overview.text
    assert 'href="/ui/annotate"' not in overview.text  # read cannot annotate: the menu does not offer it
    entries = read_entries(settings.home_dir, action="console")
    assert [e["action"] for e in entries] == ["console.login"] and entries[0]["actor"].startswith("key:ana/")

    refused = client.post("/ui/logout", data={"csrf_token": "forged"}, follow_redirects=False)
    assert refused.status_code == 403 and "security token" in refused.text
    out = client.post("/ui/logout", data={"csrf_token": _csrf(overview.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert client.get("/ui", follow_redirects=False).status_code == 303
    assert [e["action"] for e in read_entries(settings.home_dir, action="console")] == ["console.login",
                                                                                       "console.logout"]


def test_a_revoked_key_ends_its_sessions_and_a_key_without_console_roles_cannot_log_in(console) -> None:
    client, db, _ = console
    predict_only, _ = create_key(db, "robot", ["predict"], created_by="test")
    refused = _login(client, predict_only)
    assert refused.status_code == 403 and "no console role" in refused.text
    key, _ = create_key(db, "bo", ["read"], created_by="test")
    assert _login(client, key).status_code == 303
    assert client.get("/ui").status_code == 200
    revoke_keys(db, "bo")
    client.app.state.console.auth.cache_s = 0  # the key cache (5 s) would keep it a little longer
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_a_login_without_its_csrf_token_or_from_another_site_is_refused(console) -> None:
    client, db, _ = console
    key, _ = create_key(db, "cy", ["read"], created_by="test")
    client.get("/ui/login")
    bare = client.post("/ui/login", data={"key": key}, follow_redirects=False)
    assert bare.status_code == 403
    token = _csrf(client.get("/ui/login").text)
    foreign = client.post("/ui/login", data={"key": key, "csrf_token": token},
                          headers={"Origin": "https://evil.example"}, follow_redirects=False)
    assert foreign.status_code == 403 and "another site" in foreign.text


def test_login_attempts_are_throttled_per_client(console) -> None:
    client, _, _ = console
    codes = [_login(client, "rtk_000000000000_guess").status_code for _ in range(8)]
    assert codes[:5] == [401] * 5 and 429 in codes[5:]


def test_static_files_are_the_shipped_ones_only(console) -> None:
    client, _, _ = console
    css = client.get("/ui/static/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    assert client.get("/ui/static/console.css", headers={"If-None-Match": css.headers["etag"]}).status_code == 304
    for bad in ("../session.py", "nope.css", "console.py", "..%2fsession.py"):
        assert client.get(f"/ui/static/{bad}").status_code == 404
