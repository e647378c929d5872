"""The state database: one SQLAlchemy engine for SQLite (WAL, one host) or PostgreSQL (several hosts).

State that several processes update at once (per-arm counters, experiments, the
annotation queue) lives here. ``StateDB`` applies the schema migrations on first use,
so every process sees the schema its code expects.

URLs::

    sqlite:////abs/path/ratchet.db                         # default: <home>/ratchet.db
    postgresql://user@host:5432/db                         # rewritten to postgresql+psycopg://
    postgresql+psycopg://user@host/db?options=-csearch_path%3Dratchet   # tables in schema "ratchet"
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from ratchet.config.secrets import mask_url
from ratchet.errors import ConfigError
from ratchet.store.migrations import migrate
from ratchet.store.private import create_private, make_private_dir

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = ["StateDB", "database_url", "masked_url", "normalize_url"]

_WRITE_OPTION = "ratchet_write"
_PG_DRIVERS = {"postgres", "postgresql", "postgresql+psycopg"}


def database_url(settings: Settings) -> str:
    """``settings.database_url`` if set, else SQLite at ``<home>/ratchet.db`` (the home is created owner-only)."""
    if settings.database_url:
        return settings.database_url
    home = settings.home_dir.resolve()
    make_private_dir(home)
    return f"sqlite:///{home / 'ratchet.db'}"


def normalize_url(url: str | URL) -> URL:
    """Parse a database URL; ``postgres://`` and ``postgresql://`` become ``postgresql+psycopg://``.

    Raises ``ConfigError`` for anything but a SQLite file or PostgreSQL through psycopg 3.
    """
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # messages may quote the URL (and a password): never shown
        raise ConfigError("database_url is not a valid database URL (expected sqlite:///path or "
                          "postgresql://user@host:port/db; percent-encode special characters of the "
                          "user name and password)") from None
    if parsed.drivername in _PG_DRIVERS:
        return parsed.set(drivername="postgresql+psycopg")
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        if parsed.database in (None, "", ":memory:") or parsed.query.get("mode") == "memory":
            raise ConfigError("database_url: an in-memory SQLite database cannot be shared by processes; use a file")
        return parsed
    raise ConfigError(
        f"database_url: unsupported database {parsed.drivername!r}; use sqlite:///path or postgresql://user@host/db"
    )


def masked_url(url: str | URL) -> str:
    """``url`` as text with its password and secret query parameters masked: safe to print and log."""
    text = url.render_as_string(hide_password=False) if isinstance(url, URL) else str(url)
    return mask_url(text)


class StateDB:
    """A SQLAlchemy engine configured for Ratchet's state, migrated on first use.

    A new SQLite file is created owner-only (with its ``-wal`` and ``-shm`` files). SQLite
    connections run in WAL mode with ``synchronous=NORMAL``, foreign keys on and
    a busy timeout of ``lock_timeout_s``; PostgreSQL connections get the same value as
    ``lock_timeout``. Thread-safe: share one instance per process.
    """

    def __init__(self, url: str | URL, *, lock_timeout_s: float = 30.0, auto_migrate: bool = True) -> None:
        self._url = normalize_url(url)
        self._lock_timeout_ms = max(1, int(lock_timeout_s * 1000))
        self._auto_migrate = auto_migrate
        self._migrated = False
        self._migrate_lock = threading.Lock()
        if self._url.get_backend_name() == "sqlite":
            self._engine = self._sqlite_engine()
        else:
            self._engine = self._postgresql_engine()

    @classmethod
    def connect(cls, settings: Settings, **kwargs: Any) -> StateDB:
        """The state database named by ``settings`` (see ``database_url``)."""
        return cls(database_url(settings), **kwargs)

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    @property
    def url(self) -> str:
        """The URL with its password and secret query parameters (``password=``, ``sslpassword=``…) masked."""
        return masked_url(self._url)

    def __repr__(self) -> str:
        return f"StateDB({self.url!r})"

    def ensure_migrated(self) -> None:
        """Apply pending migrations once per instance (other processes may do it at the same time)."""
        if self._migrated:
            return
        with self._migrate_lock:
            if not self._migrated:
                migrate(self)
                self._migrated = True

    @contextmanager
    def begin(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Connection]:
        """A transaction, committed when the block exits normally and rolled back on an exception.

        ``write=True`` takes SQLite's write lock up front (``BEGIN IMMEDIATE``) so a busy
        database is waited for instead of failing half-way; ``snapshot=True`` makes every
        statement see the same PostgreSQL snapshot (SQLite transactions always do).
        """
        if self._auto_migrate:
            self.ensure_migrated()
        with self.transaction(write=write, snapshot=snapshot) as conn:
            yield conn

    @contextmanager
    def transaction(self, *, write: bool = False, snapshot: bool = False) -> Iterator[Connection]:
        """Like ``begin`` but without the migration check: what the migrations themselves run in."""
        with self._engine.connect() as conn:
            if write:
                conn.execution_options(**{_WRITE_OPTION: True})
            if snapshot and self.dialect == "postgresql":
                conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Run ``SELECT 1``; raises (a SQLAlchemy error) when the database cannot be reached."""
        with self._engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1").scalar_one()

    def dispose(self) -> None:
        """Close pooled connections. The instance stays usable: new connections open on demand."""
        self._engine.dispose()

    def __enter__(self) -> StateDB:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.dispose()

    def _sqlite_engine(self) -> Engine:
        if self._url.database and not self._url.database.startswith("file:") and self._url.query.get("mode") != "ro":
            # SQLite would create the file with the umask's default mode; its -wal and -shm files copy the
            # main file's mode, so creating it owner-only first keeps all three private.
            path = Path(self._url.database).expanduser()
            make_private_dir(path.parent)
            create_private(path)
        engine = create_engine(self._url)
        busy_ms = self._lock_timeout_ms

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            # SQLAlchemy emits BEGIN itself (below): sqlite3's implicit transactions skip DDL and SELECTs.
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute(f"PRAGMA busy_timeout = {busy_ms}")
                _enable_wal(cursor, busy_ms / 1000)
                cursor.execute("PRAGMA synchronous = NORMAL")
                cursor.execute("PRAGMA foreign_keys = ON")
            finally:
                cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE_OPTION) else "BEGIN")

        return engine

    def _postgresql_engine(self) -> Engine:
        connect_args: dict[str, Any] = {}
        if "connect_timeout" not in self._url.query:
            connect_args["connect_timeout"] = 10
        engine = create_engine(self._url, pool_pre_ping=True, connect_args=connect_args)
        lock_ms = self._lock_timeout_ms

        @event.listens_for(engine, "connect", insert=True)
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            try:
                dbapi_connection.execute(f"SET lock_timeout = {lock_ms}")
            finally:
                dbapi_connection.autocommit = autocommit

        return engine


def _enable_wal(cursor: Any, timeout_s: float) -> None:
    """Switch a SQLite file to WAL (once per file; it persists).

    Connections racing to switch a new file get "database is locked" at once, without
    the busy handler, so this retries until ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if cursor.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cursor.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)
