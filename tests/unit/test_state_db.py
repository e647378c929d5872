"""The state database: URLs, connection settings, explicit migrations (on SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import Connection, Integer, String, inspect, select, text
from sqlalchemy.exc import OperationalError

from ratchet.config import Settings
from ratchet.errors import ConfigError
from ratchet.store import tables
from ratchet.store.db import StateDB, database_url, normalize_url
from ratchet.store.migrations import MIGRATIONS, Migration, applied_versions, migrate

ALL = [m.version for m in MIGRATIONS]
NEXT = ALL[-1] + 1


def _migrate_in_process(url: str, barrier, results) -> None:
    db = StateDB(url, auto_migrate=False)
    barrier.wait(60)
    try:
        results.put(migrate(db))
    finally:
        db.dispose()


@pytest.fixture
def make_db(state_db_url: str):
    """Open StateDBs on the test database; all are disposed at the end."""
    opened: list[StateDB] = []

    def make(**kwargs) -> StateDB:
        db = StateDB(state_db_url, **kwargs)
        opened.append(db)
        return db

    yield make
    for db in opened:
        db.dispose()


def test_database_url_defaults_to_sqlite_in_home(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    url = database_url(settings)
    assert url == f"sqlite:///{(tmp_path / 'home').resolve()}/ratchet.db"
    assert (tmp_path / "home").is_dir()
    assert database_url(Settings(database_url="postgresql://u@h/db")) == "postgresql://u@h/db"


def test_connect_from_settings(tmp_path: Path) -> None:
    with StateDB.connect(Settings(home=tmp_path / "h")) as db:
        db.ping()
        assert db.dialect == "sqlite"
    assert (tmp_path / "h" / "ratchet.db").exists()


@pytest.mark.parametrize("url", ["postgresql://u@h/db", "postgres://u@h/db", "postgresql+psycopg://u@h/db"])
def test_postgresql_urls_use_psycopg3(url: str) -> None:
    assert normalize_url(url).drivername == "postgresql+psycopg"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "sqlite://", "sqlite:///:memory:", "not a url"])
def test_unsupported_urls_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="database_url"):
        normalize_url(url)


def test_password_is_masked() -> None:
    db = StateDB("postgresql://user:s3cret@127.0.0.1:1/db", auto_migrate=False)
    assert "s3cret" not in db.url and "s3cret" not in repr(db)


def test_sqlite_connection_settings(tmp_path: Path) -> None:
    with StateDB(f"sqlite:///{tmp_path / 'a' / 'b.db'}", lock_timeout_s=12) as db, db.begin() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 12_000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_ping_and_dialect(make_db) -> None:
    db = make_db()
    db.ping()
    assert db.dialect in ("sqlite", "postgresql")
    if db.dialect == "postgresql":
        with db.begin() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "30s"
            assert conn.exec_driver_sql("SELECT current_schema()").scalar().startswith("t_")


def test_ping_raises_when_the_server_is_down(free_port) -> None:
    db = StateDB(f"postgresql://postgres@127.0.0.1:{free_port()}/test", auto_migrate=False)
    with pytest.raises(OperationalError):
        db.ping()


def test_first_use_migrates_and_schema_matches_tables(make_db) -> None:
    db = make_db()
    with db.begin() as conn:
        inspector = inspect(conn)
        for table in tables.metadata.sorted_tables:
            columns = {c["name"]: c for c in inspector.get_columns(table.name)}
            assert list(columns) == [c.name for c in table.columns], table.name
            for column in table.columns:
                assert columns[column.name]["nullable"] == column.nullable, (table.name, column.name)
                reflected = columns[column.name]["type"]
                assert reflected._type_affinity is column.type._type_affinity, (table.name, column.name)
            pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
            assert pk == [c.name for c in table.primary_key.columns], table.name
        indexes = {i["name"] for i in inspector.get_indexes("request_index")}
        assert "ix_request_index_created_at" in indexes
    assert applied_versions(db) == [m.version for m in MIGRATIONS]


def test_migrate_is_idempotent(make_db) -> None:
    db = make_db(auto_migrate=False)
    assert applied_versions(db) == []
    assert migrate(db) == ALL
    assert migrate(db) == []
    assert migrate(make_db()) == []
    with db.begin() as conn:
        rows = conn.execute(select(tables.schema_migrations)).all()
    assert [(r.version, r.name) for r in rows] == [(m.version, m.name) for m in MIGRATIONS]
    assert rows[0].applied_at == pytest.approx(time.time(), abs=60)


def _create_widgets(conn: Connection) -> None:
    conn.execute(text("CREATE TABLE widgets (id INTEGER PRIMARY KEY, name VARCHAR(50) NOT NULL)"))


def test_an_appended_migration_runs_once(make_db) -> None:
    db = make_db(auto_migrate=False)
    assert migrate(db) == ALL
    calls = []

    def add_widgets(conn: Connection) -> None:
        calls.append(1)
        _create_widgets(conn)

    later = [*MIGRATIONS, Migration(NEXT, "widgets", add_widgets)]
    assert migrate(db, later) == [NEXT]
    assert migrate(db, later) == []
    assert calls == [1]
    with db.begin() as conn:
        columns = {c["name"]: c["type"] for c in inspect(conn).get_columns("widgets")}
    assert isinstance(columns["id"], Integer) and isinstance(columns["name"], String)
    assert applied_versions(db) == [*ALL, NEXT]


def test_a_failing_migration_leaves_nothing_behind(make_db) -> None:
    db = make_db(auto_migrate=False)

    def broken(conn: Connection) -> None:
        _create_widgets(conn)
        raise RuntimeError("half-way")

    with pytest.raises(RuntimeError, match="half-way"):
        migrate(db, [*MIGRATIONS, Migration(NEXT, "widgets", broken)])
    assert applied_versions(db) == ALL  # the earlier migrations committed on their own
    with db.begin() as conn:
        assert not inspect(conn).has_table("widgets")  # DDL rolled back with the failed migration
    assert migrate(db, [*MIGRATIONS, Migration(NEXT, "widgets", _create_widgets)]) == [NEXT]


def test_migrations_must_be_ordered(make_db) -> None:
    db = make_db(auto_migrate=False)
    with pytest.raises(ValueError, match="ascending"):
        migrate(db, [Migration(2, "b", _create_widgets), Migration(1, "a", _create_widgets)])


def test_concurrent_migrations_from_threads_apply_each_once(make_db) -> None:
    """Four processes' worth of engines start at once; a slow second migration widens the race."""
    calls = []

    def slow(conn: Connection) -> None:
        calls.append(1)
        time.sleep(0.3)
        _create_widgets(conn)

    later = [*MIGRATIONS, Migration(NEXT, "widgets", slow)]
    dbs = [make_db(auto_migrate=False) for _ in range(4)]
    barrier = threading.Barrier(len(dbs))
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def run(db: StateDB) -> None:
        barrier.wait()
        try:
            results.append(migrate(db, later))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in dbs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert sorted(v for applied in results for v in applied) == [*ALL, NEXT]
    assert calls == [1]
    assert applied_versions(dbs[0]) == [*ALL, NEXT]


def test_concurrent_migrations_from_processes(state_db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    processes = [ctx.Process(target=_migrate_in_process, args=(state_db_url, barrier, queue)) for _ in range(3)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert sorted(v for applied in results for v in applied) == ALL


def test_missing_postgresql_schema_is_a_config_error(postgres_url: str) -> None:
    url = postgres_url.split("?")[0] + "?options=-csearch_path%3Dno_such_schema_here"
    db = StateDB(url)
    try:
        with pytest.raises(ConfigError, match="no_such_schema_here"), db.begin():
            pass
    finally:
        db.dispose()


def test_begin_commits_or_rolls_back(make_db) -> None:
    db = make_db()
    db.ensure_migrated()
    row = {"request_id": "r", "signature": "s", "version": "v", "arm": "a", "created_at": 1.0}
    with pytest.raises(RuntimeError), db.begin(write=True) as conn:
        conn.execute(tables.request_index.insert().values(**row))
        raise RuntimeError
    with db.begin(write=True) as conn:
        assert conn.execute(select(tables.request_index)).all() == []
        conn.execute(tables.request_index.insert().values(**row))
    with db.begin(snapshot=True) as conn:
        assert len(conn.execute(select(tables.request_index)).all()) == 1


def test_sqlite_write_transaction_waits_for_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    with StateDB(f"sqlite:///{path}", lock_timeout_s=10) as db:
        db.ensure_migrated()
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, other.execute, args=("COMMIT",)).start()
        started = time.monotonic()
        with db.begin(write=True) as conn:
            conn.execute(tables.request_index.insert().values(request_id="r", signature="s", version="v", arm="a",
                                                              created_at=1.0))
        assert time.monotonic() - started >= 0.25
        other.close()


def test_counters_keep_their_rows_when_they_gain_the_experiment_key(make_db) -> None:
    """Migration 4 rebuilds the counter tables (SQLite cannot change a primary key): nothing is lost."""
    db = make_db(auto_migrate=False)
    migrate(db, MIGRATIONS[:3])
    with db.begin(write=True) as conn:
        conn.execute(text("INSERT INTO arm_outcomes (signature, version, arm, minute, requests, errors, latency_sum_s, "
                          "latency_sumsq, tokens_in, tokens_out, cost_usd) "
                          "VALUES ('s', 'v1', 'baseline', 100, 7, 1, 0.7, 0.07, 70, 7, 0.5)"))
        conn.execute(text("INSERT INTO arm_errors (signature, version, arm, minute, error_type, count) "
                          "VALUES ('s', 'v1', 'baseline', 100, 'parse_error', 1)"))
        conn.execute(text("INSERT INTO arm_latency_buckets (signature, version, arm, minute, bucket, count) "
                          "VALUES ('s', 'v1', 'baseline', 100, 3, 7)"))
    assert migrate(db) == [m.version for m in MIGRATIONS[3:]]
    from ratchet.store.outcomes import OutcomeRecorder, read_arm_stats

    old = read_arm_stats(db, "s")[("v1", "baseline")]
    assert (old.requests, old.errors_by_type, old.tokens_in) == (7, {"parse_error": 1}, 70)
    recorder = OutcomeRecorder(db, flush_interval_s=60)
    recorder.record("s", "v1", "baseline", latency_s=0.1, success=True, at=6000.0, experiment_id="exp")
    recorder.close()
    assert read_arm_stats(db, "s")[("v1", "baseline")].requests == 8  # all requests of the window
    assert read_arm_stats(db, "s", experiment_id="exp")[("v1", "baseline")].requests == 1  # only the experiment's
    with db.begin() as conn:
        assert inspect(conn).get_pk_constraint("arm_outcomes")["name"] == "pk_arm_outcomes"


def test_shadow_is_live_after_migration_6_even_when_7_came_first(make_db) -> None:
    """Databases made before shadow existed already have migration 7: 6 then applies on its own, and the
    one-live-experiment-per-signature index counts shadow as live."""
    from sqlalchemy.exc import IntegrityError

    db = make_db(auto_migrate=False)
    migrate(db, [m for m in MIGRATIONS if m.version != 6])
    assert migrate(db) == [6]

    def insert(experiment_id: str, status: str) -> None:
        with db.begin(write=True) as conn:
            conn.execute(text(
                "INSERT INTO experiments (experiment_id, signature, baseline_version, candidate_version, status, "
                "stages, stage_index, stage_started_at, stage_start_requests, paused_seconds, min_stage_minutes, "
                "min_stage_requests, salt, config, created_at, updated_at, revision) VALUES "
                f"('{experiment_id}', 's', 'v1', 'v2', '{status}', '[10]', 0, 0, 0, 0, 0, 1, 'x', '{{}}', 0, 0, 1)"))

    insert("old", "rolled_back")
    insert("shadowed", "shadow")
    with pytest.raises(IntegrityError):
        insert("second", "running")
    with db.begin() as conn:
        assert inspect(conn).has_table("shadow_agreement")
