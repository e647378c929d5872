"""Which version of each signature is production: a row in the state database, changed by compare-and-set.

The database is the truth; ``programs/<signature>/production.json`` (and its history file) is a
projection of it for people and tools, rewritten after every change. Every change — an operator's
``ratchet programs promote``, a rollout's promotion (in the same transaction as the experiment's
own change) — names the version it expects to replace, so nobody undoes a change they did not
see: a stale expectation raises :class:`~ratchet.errors.ConcurrentChangeError` and changes
nothing. A signature without a row (a home older than this table) reads its projection once,
and its first change inserts the row.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from ratchet.errors import ConcurrentChangeError
from ratchet.programs.versions import BASE_VERSION, VersionStore
from ratchet.store.db import StateDB
from ratchet.store.tables import clean, production_events, production_pointers

__all__ = ["ANY", "ProductionChange", "ProductionPointers"]

ANY = object()
"""``expected=ANY``: change production whatever it is now (the caller has checked nothing)."""


@dataclass(frozen=True)
class ProductionChange:
    """One change of a production pointer."""

    signature: str
    from_version: str
    to_version: str
    actor: str
    reason: str
    at: float
    experiment_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ProductionPointers:
    """Production versions in the state database, projected to files under the home."""

    def __init__(self, db: StateDB, versions: VersionStore) -> None:
        self.db = db
        self.versions = versions

    # -- reading ------------------------------------------------------------------------------
    def get(self, signature: str) -> str:
        """The production version of ``signature`` (``base`` until something was promoted)."""
        with self.db.begin() as conn:
            return self.read(conn, signature)

    def all(self) -> dict[str, str]:
        """Every signature that has a row, with its production version."""
        with self.db.begin() as conn:
            rows = conn.execute(select(production_pointers.c.signature, production_pointers.c.version)).all()
        return {row.signature: row.version for row in rows}

    def read(self, conn: Connection, signature: str) -> str:
        """Like :meth:`get`, inside the caller's transaction."""
        row = conn.execute(select(production_pointers.c.version).where(
            production_pointers.c.signature == signature)).first()
        return row.version if row is not None else self.versions.projected_production(signature)

    def history(self, signature: str) -> list[ProductionChange]:
        query = select(production_events).where(production_events.c.signature == signature).order_by(
            production_events.c.id)
        with self.db.begin() as conn:
            return [ProductionChange(signature=r.signature, from_version=r.from_version or BASE_VERSION,
                                     to_version=r.to_version, actor=r.actor, reason=r.reason or "", at=r.at,
                                     experiment_id=r.experiment_id) for r in conn.execute(query)]

    # -- changing -----------------------------------------------------------------------------
    def set(self, signature: str, version: str, *, actor: str, reason: str, expected: object = ANY,
            experiment_id: str | None = None) -> ProductionChange:
        """Make ``version`` production if production is still ``expected``; then rewrite the projection."""
        if version != BASE_VERSION:
            self.versions.get(signature, version)  # an unknown version is refused before anything changes
        with self.db.begin(write=True) as conn:
            change = self.set_in(conn, signature, version, actor=actor, reason=reason, expected=expected,
                                 experiment_id=experiment_id)
        self.project(change)
        return change

    def set_in(self, conn: Connection, signature: str, version: str, *, actor: str, reason: str,
               expected: object = ANY, experiment_id: str | None = None) -> ProductionChange:
        """The change of :meth:`set` inside the caller's write transaction (no projection: call :meth:`project`
        after it commits)."""
        row = conn.execute(select(production_pointers).where(production_pointers.c.signature == signature)).first()
        current = row.version if row is not None else self.versions.projected_production(signature)
        if expected is not ANY and current != expected:
            raise ConcurrentChangeError(
                f"production of '{signature}' is {current}, not {expected}: someone else changed it meanwhile; "
                "nothing was done — look at `ratchet programs versions` and try again")
        now = time.time()
        values = {"version": clean(version, 200), "updated_at": now, "actor": clean(actor, 100), "reason": reason}
        if row is None:
            try:
                conn.execute(insert(production_pointers).values(signature=signature, revision=1, **values))
            except IntegrityError:  # another writer inserted the first row meanwhile
                raise ConcurrentChangeError(
                    f"production of '{signature}' changed meanwhile; nothing was done") from None
        else:
            done = conn.execute(update(production_pointers).where(
                production_pointers.c.signature == signature,
                production_pointers.c.revision == row.revision).values(revision=row.revision + 1, **values))
            if done.rowcount != 1:
                raise ConcurrentChangeError(f"production of '{signature}' changed meanwhile; nothing was done")
        conn.execute(insert(production_events).values(signature=signature, at=now, actor=values["actor"],
                                                      from_version=current, to_version=values["version"],
                                                      reason=reason, experiment_id=experiment_id))
        return ProductionChange(signature=signature, from_version=current, to_version=version, actor=actor,
                                reason=reason, at=now, experiment_id=experiment_id)

    def project(self, change: ProductionChange) -> None:
        """Rewrite the signature's projection files from a committed change."""
        self.versions.write_production_projection(change.signature, {
            "version": change.to_version, "previous": change.from_version, "actor": change.actor,
            "reason": change.reason, "experiment_id": change.experiment_id,
            "updated_at": datetime.fromtimestamp(change.at, UTC).isoformat(timespec="seconds")})

    def project_all(self) -> int:
        """Make every projection file match its row (repairs a crash between a commit and its projection)."""
        fixed = 0
        with self.db.begin() as conn:
            rows = conn.execute(select(production_pointers)).all()
        for row in rows:
            if self.versions.projected_production(row.signature) != row.version:
                self.versions.write_production_projection(row.signature, {
                    "version": row.version, "actor": row.actor, "reason": row.reason or "",
                    "updated_at": datetime.fromtimestamp(row.updated_at, UTC).isoformat(timespec="seconds"),
                    "repaired": True}, history=False)
                fixed += 1
        return fixed
