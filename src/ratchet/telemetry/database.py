"""The shared telemetry sink: sampled records in the state database, for several hosts on one PostgreSQL.

With ``telemetry.sink = "database"`` (``auto`` picks it with PostgreSQL) the writer thread inserts each
batch into ``telemetry_records`` instead of appending it to ``<home>/telemetry``: one row per record, its
JSON line exactly as a file would hold it (redacted before it is queued), plus the columns retention and
the right to deletion select on. Nothing about a request waits for the insert: it happens on the writer
thread, like a file append.

Readers (the cycle's collect phase, failure triage, drift, golden coverage, ``ratchet collect telemetry``)
keep reading telemetry files: :func:`telemetry_view` yields the home's telemetry directory with the files
sink, and with the database sink a temporary owner-only directory holding every host's records as one
``interactions.jsonl`` in write order, deleted when the reader is done — so no host keeps a copy of another
host's user text.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import tempfile
import time
from collections import Counter
from collections.abc import Collection, Iterator
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import and_, delete, func, insert, or_, select

from ratchet.config import Settings
from ratchet.store.db import StateDB, database_url
from ratchet.store.private import make_private_dir, open_private
from ratchet.store.tables import telemetry_records
from ratchet.telemetry.logfiles import ACTIVE_NAME

__all__ = ["DatabaseSink", "database_sink", "sink_of", "telemetry_view"]

_CHUNK = 500
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC


def sink_of(settings: Settings, db: StateDB | None = None) -> str:
    """``files`` or ``database``: the configured sink, ``auto`` resolved by the state database's dialect."""
    sink = settings.telemetry.sink
    if sink != "auto":
        return sink
    shared = db.dialect == "postgresql" if db is not None else database_url(settings).startswith("postgres")
    return "database" if shared else "files"


def database_sink(settings: Settings, db: StateDB | None = None) -> DatabaseSink | None:
    """The shared sink when the settings choose it, else None (telemetry lives in files under the home)."""
    if sink_of(settings, db) != "database":
        return None
    return DatabaseSink(db or StateDB.connect(settings))


class DatabaseSink:
    """Writes, reads, ages and deletes telemetry records in ``telemetry_records``."""

    def __init__(self, db: StateDB, *, host: str | None = None) -> None:
        self.db = db
        self.host = (host or socket.gethostname())[:200]

    def write(self, lines: list[bytes], records: list[dict[str, Any]]) -> None:
        """Insert one batch (one transaction): each record with its serialized line."""
        rows = [{"timestamp_ms": _timestamp(record), "host": self.host, "kind": _kind(record),
                 "signature": _str(record.get("signature")), "request_id": _str(record.get("request_id")),
                 "user_pseudonym": _str(record.get("user_pseudonym")),
                 "line": line.decode("utf-8").rstrip("\n")} for line, record in zip(lines, records, strict=True)]
        with self.db.begin(write=True) as conn:
            conn.execute(insert(telemetry_records), rows)

    def export(self, directory: Path, *, since_ms: int | None = None) -> int:
        """Write every record (newer than ``since_ms``) as ``<directory>/interactions.jsonl``; returns how many."""
        written, last = 0, 0
        fd = open_private(Path(directory) / ACTIVE_NAME, _WRITE_FLAGS)
        with open(fd, "wb") as out:
            while True:  # in id order, a chunk at a time (keyset pagination: memory stays flat)
                query = select(telemetry_records.c.id, telemetry_records.c.line).where(
                    telemetry_records.c.id > last).order_by(telemetry_records.c.id).limit(5000)
                if since_ms is not None:
                    query = query.where(telemetry_records.c.timestamp_ms >= since_ms)
                with self.db.begin() as conn:
                    rows = conn.execute(query).all()
                if not rows:
                    return written
                out.write(b"".join(row.line.encode("utf-8") + b"\n" for row in rows))
                written += len(rows)
                last = rows[-1].id

    def find(self, pseudonyms: Collection[str]) -> list[dict[str, Any]]:
        """The records carrying one of ``pseudonyms``."""
        if not pseudonyms:
            return []
        with self.db.begin() as conn:
            lines = conn.scalars(select(telemetry_records.c.line).where(
                telemetry_records.c.user_pseudonym.in_(list(pseudonyms))).order_by(telemetry_records.c.id))
            return [orjson.loads(line) for line in lines]

    def purge(self, pseudonyms: Collection[str], request_ids: Collection[str]
              ) -> tuple[Counter[str], list[dict[str, Any]]]:
        """Delete the users' records: their pseudonym's, and records without one that carry one of their request
        ids (feedback, shadow calls); a record with another user's pseudonym is never removed. Returns the counts
        by kind (``interactions``, ``shadow``, ``feedback``, like the files' purge) and the records removed."""
        removed: Counter[str] = Counter()
        records: list[dict[str, Any]] = []
        conditions = [telemetry_records.c.user_pseudonym.in_(list(pseudonyms))] if pseudonyms else []
        ids = list(request_ids)
        for start in range(0, max(len(ids), 1), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            clauses = list(conditions)
            if chunk:
                clauses.append(and_(telemetry_records.c.user_pseudonym.is_(None),
                                    telemetry_records.c.request_id.in_(chunk)))
            if not clauses:
                break
            with self.db.begin(write=True) as conn:
                rows = conn.execute(delete(telemetry_records).where(or_(*clauses))
                                    .returning(telemetry_records.c.kind, telemetry_records.c.line)).all()
            for row in rows:
                removed["interactions" if row.kind == "interaction" else row.kind] += 1
                records.append(orjson.loads(row.line))
            conditions = []  # the pseudonyms' rows went with the first chunk
        return removed, records

    def delete_expired(self, max_age_s: float, now: float | None = None) -> int:
        """Retention: delete records older than ``max_age_s``; returns how many."""
        cutoff = int(((time.time() if now is None else now) - max_age_s) * 1000)
        with self.db.begin(write=True) as conn:
            return conn.execute(delete(telemetry_records).where(telemetry_records.c.timestamp_ms < cutoff)).rowcount

    def count(self) -> int:
        with self.db.begin() as conn:
            return int(conn.scalar(select(func.count()).select_from(telemetry_records)) or 0)


@contextlib.contextmanager
def telemetry_view(settings: Settings, db: StateDB | None = None, *, since_ms: int | None = None) -> Iterator[Path]:
    """The telemetry directory a reader lists files in (see the module docstring); removed after when temporary."""
    sink = database_sink(settings, db)
    home = Path(settings.home_dir)
    if sink is None:
        yield home / "telemetry"
        return
    make_private_dir(home)
    directory = Path(tempfile.mkdtemp(prefix=".telemetry-view-", dir=home))  # mode 0700
    try:
        sink.export(directory, since_ms=since_ms)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)




def _timestamp(record: dict[str, Any]) -> int:
    value = record.get("timestamp_ms")
    return value if isinstance(value, int) and not isinstance(value, bool) else int(time.time() * 1000)


def _kind(record: dict[str, Any]) -> str:
    if record.get("record") == "feedback":
        return "feedback"
    return "shadow" if record.get("arm") == "shadow" else "interaction"


def _str(value: Any) -> str | None:
    return value[:200] if isinstance(value, str) and value else None
