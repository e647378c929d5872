"""Shared fixtures: an isolated working directory and environment, scripted LMs."""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import dspy
import pytest

from ratchet.lm.engines import ScriptedEngine, ThreadedAsyncEngine


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own directory with no RATCHET_* variables and DSPy's disk cache off."""
    for key in list(os.environ):
        if key.startswith("RATCHET_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture
def scripted_lm() -> Callable[..., tuple[dspy.LM, ScriptedEngine]]:
    """Build a ``dspy.LM`` whose engine answers from a script (no model, no network)."""

    def make(responder, **kwargs) -> tuple[dspy.LM, ScriptedEngine]:
        engine = ScriptedEngine(responder, **kwargs)
        lm = dspy.LM("scripted/test", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                     num_retries=0)
        return lm, engine

    return make


# DSPy fetches LiteLLM's model price map from GitHub on first use; tests run offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")


# --- the state database: every test that takes `state_db_url` runs on SQLite and on PostgreSQL ---

PG_HOST, PG_PORT, PG_DATABASE = "127.0.0.1", 5432, "test"
_pg_user: list[str] = []  # found once per session


def _postgres_user() -> str | None:
    """The first of ``postgres``/``root`` the local server accepts; None if nothing listens on the port."""
    import psycopg

    if _pg_user:
        return _pg_user[0]
    try:
        socket.create_connection((PG_HOST, PG_PORT), timeout=2).close()
    except OSError:
        return None
    errors = []
    for user in ("postgres", "root"):
        try:
            psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=user, connect_timeout=5).close()
        except psycopg.OperationalError as exc:
            errors.append(f"{user}: {exc}")
            continue
        _pg_user.append(user)
        return user
    pytest.fail(f"PostgreSQL answers on {PG_HOST}:{PG_PORT} but refuses users postgres and root: {errors}")


def _pg_admin(user: str, sql: str) -> None:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, dbname=PG_DATABASE, user=user, autocommit=True) as conn:
        conn.execute("SET lock_timeout = '20s'")
        conn.execute(sql)


@pytest.fixture(params=["sqlite", "postgresql"])
def state_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database URL: a SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'state' / 'ratchet.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """Like ``state_db_url`` for tests about PostgreSQL alone."""
    yield from _postgres_schema_url()


def _postgres_schema_url() -> Iterator[str]:
    user = _postgres_user()
    if user is None:
        pytest.skip(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}")
    schema = f"t_{secrets.token_hex(6)}"
    _pg_admin(user, f'CREATE SCHEMA "{schema}"')
    try:
        yield f"postgresql+psycopg://{user}@{PG_HOST}:{PG_PORT}/{PG_DATABASE}?options=-csearch_path%3D{schema}"
    finally:
        _pg_admin(user, f'DROP SCHEMA "{schema}" CASCADE')
