"""Issue 13, item 1: API keys and roles. Every endpoint declares a role; a real server refuses 401 without a valid
key and 403 with the wrong role; keys are stored only as hashes, revoked, expired and rotated."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute
from sqlalchemy import select
from test_http_api import _wait_ready, intent_responder, running

from ratchet.audit import read_entries
from ratchet.auth import ROLES, create_key, grants, key_id_of, list_keys, parse_roles, revoke_keys, rotate_key
from ratchet.config import Settings
from ratchet.errors import ConfigError
from ratchet.lm import CompletionAdapter, LMBundle
from ratchet.serve import Runtime
from ratchet.serve.app import create_app
from ratchet.serve.auth import ROLE_EXTENSION, Authenticator, auth_required, is_loopback
from ratchet.store.db import StateDB
from ratchet.store.tables import api_keys

SIG = "classify_intent"


def _settings(home: Path, **auth) -> Settings:
    settings = Settings(home=home)
    for key, value in auth.items():
        setattr(settings.auth, key, value)
    return settings


# -- roles and the key store ------------------------------------------------------------------------------


def test_roles_grant_what_they_name_and_admin_everything() -> None:
    assert grants(["admin"], "feedback") and grants(["admin"], "operator")
    assert grants(["operator"], "read") and not grants(["operator"], "predict")
    assert grants(["predict", "feedback"], "feedback") and not grants(["read"], "feedback")
    assert grants([], "public")
    assert parse_roles(["read,feedback", "predict"]) == ("predict", "feedback", "read")
    with pytest.raises(ConfigError, match="unknown role"):
        parse_roles(["reader"])


def test_a_key_is_shown_once_and_only_its_hash_is_stored(tmp_path: Path) -> None:
    db = StateDB.connect(_settings(tmp_path))
    key, row = create_key(db, "svc", ["predict"], created_by="test")
    assert key.startswith(f"rtk_{row.key_id}_") and key_id_of(key) == row.key_id
    with db.begin() as conn:
        stored = conn.execute(select(api_keys)).one()._asdict()
    assert key not in {str(v) for v in stored.values()} and key.split("_", 2)[2] not in str(stored)
    assert stored["secret_sha256"] == hashlib.sha256(key.encode()).hexdigest()
    for malformed in ("", "rtk", "rtk__x", f"rtk_{row.key_id.upper()}_x", "Bearer x", "rtk_zzzzzzzzzzzz_x"):
        assert key_id_of(malformed) is None


def test_revoke_rotate_and_expiry(tmp_path: Path) -> None:
    settings = _settings(tmp_path, mode="required", cache_seconds=0)
    db = StateDB.connect(settings)
    auth = Authenticator(settings, db)
    old_key, old = create_key(db, "svc", ["feedback"], created_by="t", expires_days=10)
    assert auth.principal(old_key).name == "svc"
    new_key, new, replaced = rotate_key(db, "svc", created_by="t", grace_hours=1)
    assert replaced.key_id == old.key_id and new.roles == old.roles
    assert new.expires_at == pytest.approx(new.created_at + 10 * 86400)  # keeps its lifetime
    assert auth.principal(old_key).key_id == old.key_id  # still valid in its grace hour
    assert auth.principal(new_key).key_id == new.key_id
    with pytest.raises(Exception, match="expired"):
        auth.principal(old_key, now=time.time() + 3601)
    assert [k.key_id for k in revoke_keys(db, new.key_id)] == [new.key_id]
    with pytest.raises(Exception, match="revoked"):
        auth.principal(new_key)
    with pytest.raises(ConfigError, match="no active key"):
        revoke_keys(db, "nobody")
    assert [k.status() for k in list_keys(db, include_inactive=True)] == ["active", "revoked"]  # old: 1 h grace


def test_auth_required_when_binding_beyond_loopback() -> None:
    for host, loopback in (("127.0.0.1", True), ("::1", True), ("localhost", True), ("0.0.0.0", False),
                           ("10.1.2.3", False), ("my-host", False)):
        assert is_loopback(host) is loopback
        settings = Settings()
        settings.serve.host = host
        assert auth_required(settings) is not loopback
    settings = Settings()
    settings.auth.mode = "required"
    assert auth_required(settings)
    settings.serve.host, settings.auth.mode = "0.0.0.0", "off"
    assert not auth_required(settings)


# -- the HTTP API ----------------------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path, free_port, scripted_lm) -> Iterator:
    runtimes: list[Runtime] = []

    @contextmanager
    def start(**auth) -> Iterator[tuple[str, Runtime]]:
        settings = _settings(tmp_path / "home", **auth)
        lm, _engine = scripted_lm(intent_responder)
        runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
        runtimes.append(runtime)
        with running(runtime, free_port()) as url:
            assert _wait_ready(url).status_code == 200
            yield url, runtime

    yield start
    for runtime in runtimes:
        runtime.close()


def _operations(runtime: Runtime) -> list[tuple[str, str, str]]:
    """(method, path, declared role) of every route the app has, whether or not it is in the OpenAPI schema."""
    app = create_app(runtime=runtime)
    out = []
    for route in app.routes:
        if not isinstance(route, APIRoute):
            continue
        role = (route.openapi_extra or {}).get(ROLE_EXTENSION)
        assert role is not None, f"{route.path} declares no role"
        for method in route.methods:
            out.append((method, route.path, role))
    return out


def _request(url: str, method: str, path: str, key: str | None) -> httpx.Response:
    path = (path.replace("{signature}", "no_such_signature").replace("{experiment_id}", "no_such_experiment")
            .replace("{action}", "pause"))
    body = None
    if path.startswith("/v1/experiments/"):
        body = {"reason": "matrix"}
    elif path.endswith("/predict"):
        body = {"inputs": {"text": "my card was stolen"}}
    elif path == "/v1/feedback":
        body = {"request_id": "r-1", "score": 1.0}
    headers = {"X-API-Key": key} if key else {}
    return httpx.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)


def test_auth_matrix_every_endpoint_by_every_role(server) -> None:
    with server(mode="required") as (url, runtime):
        operations = _operations(runtime)
        assert {path for _, path, _ in operations} >= {"/v1/feedback", "/v1/programs", "/metrics", "/health",
                                                       "/ready", "/openapi.json", f"/v1/programs/{SIG}/predict",
                                                       "/v1/experiments", "/v1/experiments/{experiment_id}/{action}"}
        keys = {role: create_key(runtime.db, f"k-{role}", [role], created_by="test")[0] for role in ROLES}
        checked = 0
        for method, path, needed in operations:
            anonymous = _request(url, method, path, None)
            if needed == "public":
                assert anonymous.status_code == 200, (path, anonymous.text)
                continue
            assert anonymous.status_code == 401, (method, path)
            assert anonymous.json()["error"] == "unauthorized" and "traceback" not in anonymous.text.lower()
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            assert _request(url, method, path, "rtk_000000000000_forged").status_code == 401
            for role, key in keys.items():
                response = _request(url, method, path, key)
                if grants([role], needed):
                    assert response.status_code not in (401, 403), (method, path, role, response.text)
                else:
                    assert response.status_code == 403, (method, path, role)
                    assert response.json() == {"error": "forbidden",
                                               "message": f"this key does not hold the '{needed}' role"}
                checked += 1
        assert checked >= 6 * len(ROLES)


def test_the_key_is_checked_before_the_body_is_read(server) -> None:
    """Found by fuzzing without a key: FastAPI parses a JSON body before it solves dependencies, so a body that was
    not JSON or not UTF-8 was answered 422 to a client without a key (and an anonymous body was parsed)."""
    json_type = {"content-type": "application/json"}
    with server(mode="required") as (url, runtime):
        for path in (f"/v1/programs/{SIG}/predict", "/v1/feedback"):
            for body in (b"\x00", b"\xff\xfe", b"{", b'{"inputs": 3}', b"[]"):
                anonymous = httpx.post(f"{url}{path}", content=body, headers=json_type)
                assert anonymous.status_code == 401, (path, body, anonymous.text)
                assert anonymous.json()["error"] == "unauthorized" and "www-authenticate" in anonymous.headers
        reader = create_key(runtime.db, "reader", ["read"], created_by="test")[0]
        wrong_role = httpx.post(f"{url}/v1/feedback", content=b"{", headers={**json_type, "X-API-Key": reader})
        assert wrong_role.status_code == 403
        scorer = create_key(runtime.db, "scorer", ["feedback"], created_by="test")[0]
        broken = httpx.post(f"{url}/v1/feedback", content=b"{",
                            headers={**json_type, "Authorization": f"Bearer {scorer}"})
        assert broken.status_code == 422 and broken.json()["error"] == "invalid_request"  # a key: then the body


def test_bearer_header_revocation_and_last_use(server) -> None:
    with server(mode="required", cache_seconds=0) as (url, runtime):
        key, _row = create_key(runtime.db, "svc", ["read"], created_by="test")
        bearer = httpx.get(f"{url}/v1/programs", headers={"Authorization": f"Bearer {key}"})
        assert bearer.status_code == 200
        assert list_keys(runtime.db)[0].last_used_at is not None
        revoke_keys(runtime.db, "svc")
        refused = httpx.get(f"{url}/v1/programs", headers={"X-API-Key": key})
        assert refused.status_code == 401 and refused.json()["message"] == "the API key is revoked"


def test_refusals_are_audited_once_a_minute_per_client_and_reason(server) -> None:
    with server(mode="required") as (url, runtime):
        for _ in range(5):
            assert httpx.get(f"{url}/metrics").status_code == 401
        key, _row = create_key(runtime.db, "reader", ["read"], created_by="test")
        assert httpx.post(f"{url}/v1/feedback", json={"request_id": "r", "score": 0.0},
                          headers={"X-API-Key": key}).status_code == 403
        entries = list(read_entries(runtime.settings.home_dir))
        failures = [e for e in entries if e["action"] == "auth.failure"]
        denied = [e for e in entries if e["action"] == "auth.denied"]
        assert len(failures) == 1 and failures[0]["reason"] == "missing" and failures[0]["client"] == "127.0.0.1"
        assert failures[0]["outcome"] == "refused" and failures[0]["target"] == "/metrics"
        assert len(denied) == 1 and denied[0]["details"]["role"] == "feedback"
        assert key not in str(entries)


def test_open_on_loopback_but_a_shown_key_still_counts(server) -> None:
    with server() as (url, runtime):  # auth.mode auto, serve.host 127.0.0.1
        assert httpx.get(f"{url}/v1/programs").status_code == 200
        assert httpx.get(f"{url}/v1/programs", headers={"X-API-Key": "rtk_000000000000_nope"}).status_code == 401
        key, _row = create_key(runtime.db, "reader", ["read"], created_by="test")
        predict = httpx.post(f"{url}/v1/programs/{SIG}/predict", json={"inputs": {"text": "hi"}},
                             headers={"X-API-Key": key})
        assert predict.status_code == 403


def test_keys_check_warns_about_old_and_unused_keys(tmp_path: Path) -> None:
    from ratchet.monitor.checks import run_checks

    settings = _settings(tmp_path)
    db = StateDB.connect(settings)
    day = 86400.0
    now = time.time()
    create_key(db, "fresh", ["read"], created_by="t", now=now - 2 * day)
    _key, old = create_key(db, "ancient", ["read"], created_by="t", now=now - 91 * day)
    _key, idle = create_key(db, "idle", ["read"], created_by="t", now=now - 40 * day)
    from ratchet.auth.keys import touch_key

    touch_key(db, old.key_id, now - day)  # old but used: only due for rotation
    run = run_checks(settings, ["keys"], db=db, now=now)
    alerts = {alert.title: alert for alert in run.alerts}
    assert set(alerts) == {"API Key Rotation Due", "API Key Unused"}
    assert alerts["API Key Rotation Due"].details["keys"] == [old.key_id]
    assert alerts["API Key Unused"].details["keys"] == [idle.key_id]
    assert run.results[0].summary == {"active_keys": 3, "older_than_max_age": 1, "unused": 1}


def test_an_operator_pauses_over_http_and_the_audit_log_names_the_key(server) -> None:
    from ratchet.evaluation import fewshot_program
    from ratchet.programs.versions import VersionStore
    from ratchet.rollout import RolloutController

    with server(mode="required") as (url, runtime):
        settings = runtime.settings
        settings.rollout.start_in_shadow = False
        spec = runtime.registry.get(SIG)
        store = VersionStore(settings.home_dir)
        store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
        store.save(spec, fewshot_program(spec, 3), lm="m", adapter="a")
        RolloutController(settings, runtime.registry, db=runtime.db).start(SIG, "v2", experiment_id="exp_1",
                                                                           baseline="v1")
        operator, op_row = create_key(runtime.db, "oncall", ["operator"], created_by="test")
        reader, _row = create_key(runtime.db, "dash", ["read"], created_by="test")
        listed = httpx.get(f"{url}/v1/experiments", headers={"X-API-Key": reader}).json()["experiments"]
        assert [e["status"] for e in listed] == ["running"] and "salt" not in listed[0]
        assert httpx.post(f"{url}/v1/experiments/exp_1/pause", headers={"X-API-Key": reader}).status_code == 403
        paused = httpx.post(f"{url}/v1/experiments/exp_1/pause", json={"reason": "looks odd"},
                            headers={"X-API-Key": operator})
        assert paused.status_code == 200 and paused.json()["experiment"]["status"] == "paused"
        again = httpx.post(f"{url}/v1/experiments/exp_1/promote", headers={"X-API-Key": operator})
        assert again.status_code in (200, 409)
        no_reason = httpx.post(f"{url}/v1/experiments/exp_1/rollback", headers={"X-API-Key": operator})
        assert no_reason.status_code == 422 and no_reason.json()["field"] == "reason"
        missing = httpx.post(f"{url}/v1/experiments/nope/resume", headers={"X-API-Key": operator})
        assert missing.status_code == 404 and missing.json()["error"] == "unknown_experiment"
        assert RolloutController(settings, runtime.registry, db=runtime.db).store.get("exp_1").status in (
            "paused", "promoted")
        [entry] = [e for e in read_entries(settings.home_dir, action="experiment.pause")]
        assert entry["actor"] == f"key:oncall/{op_row.key_id}" and entry["source"] == "http"
        assert entry["client"] == "127.0.0.1" and entry["outcome"] == "ok"


def test_keys_and_feedback_revisions_on_both_databases(tmp_path: Path, state_db_url: str) -> None:
    """The key store and feedback revisions on SQLite and PostgreSQL alike (the upsert returns the revision)."""
    import threading

    from ratchet.store.feedback import feedback_history, record_feedback

    settings = _settings(tmp_path, mode="required", cache_seconds=0)
    settings.database_url = state_db_url
    with StateDB(state_db_url) as db:
        key, row = create_key(db, "svc", ["feedback"], created_by="t")
        auth = Authenticator(settings, db)
        assert auth.principal(key).roles == ("feedback",)
        rotate_key(db, row.key_id, created_by="t", grace_hours=0)
        with pytest.raises(Exception, match="expired"):
            auth.principal(key, now=time.time() + 1)
        assert record_feedback(db, "r1", 0.5, principal="a") == 1
        threads = [threading.Thread(target=record_feedback, args=(db, "r1", i / 10), kwargs={"principal": f"p{i}"})
                   for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        history = feedback_history(db, "r1")
        assert [h["revision"] for h in history] == list(range(1, 10))  # concurrent revisions: distinct, no gaps
        assert {h["principal"] for h in history} == {"a", *(f"p{i}" for i in range(8))}


def test_keys_cli_refuses_bad_input_clearly_and_stores_nothing(tmp_path: Path) -> None:
    import json as _json

    from typer.testing import CliRunner

    from ratchet.cli.main import app

    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\n')
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, ["--config", str(config), "keys", *args])

    bad_role = run("create", "--name", "svc", "--role", "boss")
    assert bad_role.exit_code == 2 and "unknown role(s) boss" in bad_role.output
    bad_days = run("create", "--name", "svc", "--role", "read", "--expires-days", "0")
    assert bad_days.exit_code == 2 and "--expires-days must be positive" in bad_days.output
    assert _json.loads(run("list", "--all", "--json").output)["keys"] == []
    missing = run("revoke", "nobody")
    assert missing.exit_code == 2 and "no active key named or with id 'nobody'" in missing.output
    made = _json.loads(run("create", "--name", "svc", "--role", "read", "--json").output)
    assert made["key"].startswith("rtk_") and made["roles"] == ["read"]
    entries = read_entries(tmp_path / "home", action="keys")
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("keys.create", "refused"), ("keys.create", "refused"), ("keys.revoke", "refused"), ("keys.create", "ok")]
    assert made["key"] not in str(entries)
