"""Named leases in the state database: at most one process acts, and its heartbeat shows it is alive.

A lease is a row: its owner, when it expires, and the owner's last heartbeat. ``acquire`` takes a
free or expired lease, or renews (and heartbeats) one's own, in one conditional statement, so two
processes on any hosts never both hold it. A holder that dies stops renewing; once ``expires_at``
has passed another process takes over, and the stale ``heartbeat_at`` is what a check or an alert
rule sees meanwhile.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ratchet.store.db import StateDB
from ratchet.store.tables import leases

__all__ = ["CONTROLLER_LEASE", "Lease", "LeaseStore"]

CONTROLLER_LEASE = "controller"
"""The lease the rollout controller (``ratchet controller``) holds while it acts."""


@dataclass(frozen=True)
class Lease:
    name: str
    owner: str
    acquired_at: float
    expires_at: float
    heartbeat_at: float
    info: dict[str, Any] = field(default_factory=dict)

    def held(self, now: float | None = None) -> bool:
        return self.expires_at > (time.time() if now is None else now)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "owner": self.owner, "acquired_at": self.acquired_at,
                "expires_at": self.expires_at, "heartbeat_at": self.heartbeat_at, "info": self.info}


class LeaseStore:
    """Leases by name."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def acquire(self, name: str, owner: str, ttl_s: float, *, info: dict[str, Any] | None = None) -> bool:
        """Take ``name`` (free, expired or already ours) for ``ttl_s`` and heartbeat it; False when another holds it."""
        now = time.time()
        values = {"owner": owner, "expires_at": now + ttl_s, "heartbeat_at": now,
                  "info": json.dumps(info or {}, default=str)}
        try:
            with self.db.begin(write=True) as conn:
                row = conn.execute(select(leases.c.owner).where(leases.c.name == name)).first()
                if row is None:
                    conn.execute(insert(leases).values(name=name, acquired_at=now, **values))
                    return True
                taken = conn.execute(update(leases).where(
                    leases.c.name == name, or_(leases.c.owner == owner, leases.c.expires_at < now),
                ).values(**values, acquired_at=leases.c.acquired_at if row.owner == owner else now))
                return taken.rowcount == 1
        except IntegrityError:  # another process inserted the first row meanwhile: it holds the lease
            return False

    def release(self, name: str, owner: str) -> None:
        """Give ``name`` up at once (only if we hold it): a successor need not wait for the expiry."""
        with self.db.begin(write=True) as conn:
            conn.execute(update(leases).where(leases.c.name == name, leases.c.owner == owner)
                         .values(expires_at=time.time()))

    def get(self, name: str) -> Lease | None:
        with self.db.begin() as conn:
            row = conn.execute(select(leases).where(leases.c.name == name)).first()
        if row is None:
            return None
        try:
            info = json.loads(row.info) if row.info else {}
        except ValueError:
            info = {}
        return Lease(name=row.name, owner=row.owner, acquired_at=row.acquired_at, expires_at=row.expires_at,
                     heartbeat_at=row.heartbeat_at, info=info if isinstance(info, dict) else {})
