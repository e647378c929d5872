"""A user's rows in the state database: found by pseudonym, deleted, and their bytes scrubbed from the files.

Deleting a row does not erase its bytes. SQLite keeps them in free pages and in the ``-wal`` file;
PostgreSQL keeps dead tuples until the table is rewritten. So the deleting connection turns on
``PRAGMA secure_delete`` (freed content is zeroed), and :func:`scrub` then rebuilds the file
(``VACUUM``) and truncates the WAL (``wal_checkpoint(TRUNCATE)``, retried while readers hold it);
on PostgreSQL it rewrites the touched tables (``VACUUM FULL`` of ``feedback``, ``feedback_revisions``,
``request_index``, ``annotation_tasks`` and ``annotations``: new files, the old ones unlinked).
PostgreSQL's own write-ahead log and its base backups are out of Ratchet's reach (docs/operations.md).
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import delete, select

from ratchet.store.db import StateDB
from ratchet.store.tables import (
    REQUEST_ID_LEN,
    annotation_imports,
    annotation_tasks,
    annotations,
    clean,
    feedback,
    feedback_revisions,
    request_index,
)

__all__ = ["delete_annotation_rows", "delete_feedback_rows", "delete_request_index_rows", "request_ids_of", "scrub"]

_CHUNK = 500
_CHECKPOINT_TRIES = 20


def request_ids_of(db: StateDB, pseudonyms: Collection[str]) -> set[str]:
    """Request ids the request index holds for ``pseudonyms``."""
    found: set[str] = set()
    with db.begin() as conn:
        for chunk in _chunks(sorted(pseudonyms)):
            found.update(conn.scalars(select(request_index.c.request_id)
                                      .where(request_index.c.user_pseudonym.in_(chunk))))
    return found


def delete_feedback_rows(db: StateDB, request_ids: Iterable[str]) -> tuple[int, int]:
    """Delete the feedback stored for these request ids, and every revision of it; returns (feedback rows,
    revision rows)."""
    ids = sorted({clean(rid, REQUEST_ID_LEN) for rid in request_ids})
    deleted = revisions = 0
    with db.begin(write=True) as conn:
        _secure_delete(conn)
        for chunk in _chunks(ids):
            deleted += conn.execute(delete(feedback).where(feedback.c.request_id.in_(chunk))).rowcount
            revisions += conn.execute(delete(feedback_revisions).where(
                feedback_revisions.c.request_id.in_(chunk))).rowcount
    return deleted, revisions


def delete_annotation_rows(db: StateDB, request_ids: Iterable[str]) -> tuple[int, int]:
    """Delete the annotation tasks made from these requests (they hold the request's inputs and output), their
    answers and their import records; returns (tasks, answers). Examples already imported from them are in the
    dataset and golden files, which the deletion rewrites by request id."""
    ids = sorted({clean(rid, REQUEST_ID_LEN) for rid in request_ids})
    tasks = answers = 0
    with db.begin(write=True) as conn:
        _secure_delete(conn)
        for chunk in _chunks(ids):
            task_ids = list(conn.scalars(select(annotation_tasks.c.task_id)
                                         .where(annotation_tasks.c.request_id.in_(chunk))))
            for part in _chunks(task_ids):
                answers += conn.execute(delete(annotations).where(annotations.c.task_id.in_(part))).rowcount
                conn.execute(delete(annotation_imports).where(annotation_imports.c.task_id.in_(part)))
                tasks += conn.execute(delete(annotation_tasks).where(annotation_tasks.c.task_id.in_(part))).rowcount
    return tasks, answers


def delete_request_index_rows(db: StateDB, pseudonyms: Collection[str], request_ids: Iterable[str]) -> int:
    """Delete the request-index rows of ``pseudonyms`` and of these request ids when they carry no other user's
    pseudonym; returns how many rows."""
    ids = sorted({clean(rid, REQUEST_ID_LEN) for rid in request_ids})
    ri = request_index.c
    deleted = 0
    with db.begin(write=True) as conn:
        _secure_delete(conn)
        for chunk in _chunks(sorted(pseudonyms)):
            deleted += conn.execute(delete(request_index).where(ri.user_pseudonym.in_(chunk))).rowcount
        for chunk in _chunks(ids):
            deleted += conn.execute(delete(request_index).where(ri.request_id.in_(chunk),
                                                                 ri.user_pseudonym.is_(None))).rowcount
    return deleted


def scrub(db: StateDB, tables: Sequence[str] = ("feedback", "feedback_revisions", "request_index", "annotation_tasks",
                                               "annotations")) -> dict[str, Any]:
    """Make deleted rows' bytes unrecoverable from the database files (see the module docstring).

    Returns what was done; raises ``RuntimeError`` when SQLite's WAL could not be truncated because
    other connections kept reading it (run the deletion again once they are idle).
    """
    if db.dialect == "postgresql":
        with db.engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in tables:
                conn.exec_driver_sql(f'VACUUM (FULL) "{table}"')
        return {"vacuumed": list(tables)}
    raw = db.engine.raw_connection()
    try:
        cursor = raw.cursor()
        try:
            cursor.execute("PRAGMA secure_delete = ON")
            cursor.execute("VACUUM")
            for _ in range(_CHECKPOINT_TRIES):
                busy, _log, _done = cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    return {"vacuumed": True, "wal_truncated": True}
                time.sleep(0.1)
        finally:
            cursor.close()
    finally:
        raw.close()
    raise RuntimeError("the database was vacuumed but its WAL could not be truncated: other processes kept "
                       "reading it; run the deletion again when they are idle (old page images stay in the -wal "
                       "file until then)")


def _secure_delete(conn: Any) -> None:
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA secure_delete = ON")


def _chunks(ids: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start:start + _CHUNK]
