"""Feedback scores on served requests: stored by request id, matched to arms when stats are read.

``feedback`` holds each request's latest revision (what quality and collection read) and who sent it;
``feedback_revisions`` holds every revision, so a later score never silently replaces an earlier one.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ratchet.store.db import StateDB
from ratchet.store.tables import NAME_LEN, REQUEST_ID_LEN, clean, feedback, feedback_revisions, request_index

__all__ = ["count_feedback", "feedback_history", "prune_feedback", "record_feedback"]


def record_feedback(db: StateDB, request_id: str, score: float, correction: dict[str, Any] | None = None,
                    *, principal: str | None = None, at: float | None = None) -> int:
    """Store a 0–1 score (and corrected outputs) for ``request_id`` from ``principal``; returns its revision.

    The first feedback on a request is revision 1; each later one becomes the current value with the
    next revision, and every revision stays in ``feedback_revisions`` (who, when, what).
    """
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    row = {"request_id": clean(request_id, REQUEST_ID_LEN), "score": float(score),
           "correction": None if correction is None else json.dumps(correction, ensure_ascii=False, default=str),
           "created_at": time.time() if at is None else at,
           "principal": None if principal is None else clean(principal, NAME_LEN), "revision": 1}
    statement = insert(feedback).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[feedback.c.request_id],
        set_={"score": statement.excluded.score, "correction": statement.excluded.correction,
              "created_at": statement.excluded.created_at, "principal": statement.excluded.principal,
              "revision": feedback.c.revision + 1},
    ).returning(feedback.c.revision)
    with db.begin(write=True) as conn:  # the upsert locks the row: concurrent revisions get distinct numbers
        revision = int(conn.execute(statement).scalar_one())
        conn.execute(feedback_revisions.insert().values(**{**row, "revision": revision}))
    return revision


def feedback_history(db: StateDB, request_id: str) -> list[dict[str, Any]]:
    """Every revision of the feedback on ``request_id``, oldest first."""
    query = (select(feedback_revisions).where(feedback_revisions.c.request_id == request_id)
             .order_by(feedback_revisions.c.revision))
    with db.begin() as conn:
        rows = conn.execute(query).all()
    return [{**row._asdict(), "correction": None if row.correction is None else json.loads(row.correction)}
            for row in rows]


def count_feedback(db: StateDB, signature: str, *, since: float) -> dict[str, int]:
    """Feedback received since ``since`` on requests of ``signature``: ``{"feedback": n, "corrections": m}``."""
    joined = feedback.join(request_index, feedback.c.request_id == request_index.c.request_id)
    query = (select(func.count(), func.count(feedback.c.correction)).select_from(joined)
             .where(request_index.c.signature == signature, feedback.c.created_at >= since))
    with db.begin() as conn:
        total, corrections = conn.execute(query).one()
    return {"feedback": int(total or 0), "corrections": int(corrections or 0)}


def prune_feedback(db: StateDB, older_than: float) -> int:
    """Delete feedback (and revisions) received before ``older_than`` (epoch seconds); returns how many requests."""
    with db.begin(write=True) as conn:
        conn.execute(delete(feedback_revisions).where(feedback_revisions.c.created_at < older_than))
        return conn.execute(delete(feedback).where(feedback.c.created_at < older_than)).rowcount
