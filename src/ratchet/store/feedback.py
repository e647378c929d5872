"""Feedback scores on served requests: stored by request id, matched to arms when stats are read."""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ratchet.store.db import StateDB
from ratchet.store.tables import REQUEST_ID_LEN, clean, feedback, request_index

__all__ = ["count_feedback", "prune_feedback", "record_feedback"]


def record_feedback(db: StateDB, request_id: str, score: float, correction: dict[str, Any] | None = None,
                    *, at: float | None = None) -> None:
    """Store a 0–1 score (and corrected outputs) for ``request_id``; a later score for it replaces the earlier."""
    insert = postgresql.insert if db.dialect == "postgresql" else sqlite.insert
    row = {"request_id": clean(request_id, REQUEST_ID_LEN), "score": float(score),
           "correction": None if correction is None else json.dumps(correction, ensure_ascii=False, default=str),
           "created_at": time.time() if at is None else at}
    statement = insert(feedback).values(**row)
    statement = statement.on_conflict_do_update(
        index_elements=[feedback.c.request_id],
        set_={"score": statement.excluded.score, "correction": statement.excluded.correction,
              "created_at": statement.excluded.created_at},
    )
    with db.begin(write=True) as conn:
        conn.execute(statement)


def count_feedback(db: StateDB, signature: str, *, since: float) -> dict[str, int]:
    """Feedback received since ``since`` on requests of ``signature``: ``{"feedback": n, "corrections": m}``."""
    joined = feedback.join(request_index, feedback.c.request_id == request_index.c.request_id)
    query = (select(func.count(), func.count(feedback.c.correction)).select_from(joined)
             .where(request_index.c.signature == signature, feedback.c.created_at >= since))
    with db.begin() as conn:
        total, corrections = conn.execute(query).one()
    return {"feedback": int(total or 0), "corrections": int(corrections or 0)}


def prune_feedback(db: StateDB, older_than: float) -> int:
    """Delete feedback received before ``older_than`` (epoch seconds); returns how many rows."""
    with db.begin(write=True) as conn:
        return conn.execute(delete(feedback).where(feedback.c.created_at < older_than)).rowcount
