"""The request index: which (signature, version, arm) served a request id, and when.

The recorder adds entries (first entry wins) with its counter flushes; feedback, which may reach
any process later, is matched to its arm through them, both when a score arrives
(``find_request``/``lookup_request``) and when arm statistics are read (a join in
``ratchet.store.outcomes.stats``). ``prune_request_index`` deletes old entries for retention.
"""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import delete, select

from ratchet.store.db import StateDB
from ratchet.store.outcomes._columns import clean
from ratchet.store.tables import REQUEST_ID_LEN, request_index

__all__ = ["IndexedRequest", "find_request", "lookup_request", "prune_request_index"]


class IndexedRequest(NamedTuple):
    """Which (signature, version, arm) served a request, when (epoch seconds), and for which user (a keyed
    pseudonym; None when the call came without a user id)."""

    signature: str
    version: str
    arm: str
    served_at: float
    user: str | None = None


def find_request(db: StateDB, request_id: str) -> IndexedRequest | None:
    """What served ``request_id`` and when, if it was indexed and not pruned."""
    ri = request_index.c
    query = select(ri.signature, ri.version, ri.arm, ri.created_at, ri.user_pseudonym).where(
        ri.request_id == clean(request_id, REQUEST_ID_LEN)
    )
    with db.begin() as conn:
        row = conn.execute(query).first()
    return IndexedRequest(row[0], row[1], row[2], float(row[3]), row[4]) if row is not None else None


def lookup_request(db: StateDB, request_id: str) -> tuple[str, str, str] | None:
    """The (signature, version, arm) that served ``request_id``, if it was indexed and not pruned."""
    found = find_request(db, request_id)
    return found[:3] if found is not None else None


def prune_request_index(db: StateDB, older_than: float) -> int:
    """Delete request-index entries created before ``older_than`` (epoch seconds); returns how many."""
    with db.begin(write=True) as conn:
        return conn.execute(delete(request_index).where(request_index.c.created_at < older_than)).rowcount
