"""Program versions in the state database: how several hosts share what one of them saved.

With PostgreSQL, :class:`~ratchet.programs.versions.VersionStore` writes every saved version to the
``program_versions`` table as well as to its files, and a host that lacks a version fetches its row,
checks the fingerprint and caches it under its own home. The row holds the version's ``program.json``
(DSPy state) and ``metadata.json`` as JSON text; only the right to deletion rewrites a row (demos
removed, new fingerprint), and each host's cache follows the row's fingerprint.
With SQLite (one machine) nothing is written here: the files are the versions.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ratchet.store.db import StateDB
from ratchet.store.tables import program_versions

__all__ = ["VersionRow", "VersionRows"]


@dataclass(frozen=True)
class VersionRow:
    """One version as the database holds it."""

    signature: str
    version: str
    fingerprint: str
    metadata: dict[str, Any]
    state: dict[str, Any]


class VersionRows:
    """Reads and writes ``program_versions`` (used only when the state database is shared: PostgreSQL)."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    @staticmethod
    def shared(db: StateDB | None) -> bool:
        """Whether versions go to this database: PostgreSQL (several hosts), not SQLite (one machine)."""
        return db is not None and db.dialect == "postgresql"

    def claim(self, signature: str, version: str, fingerprint: str, metadata: dict[str, Any],
              state: dict[str, Any]) -> bool:
        """Insert a new version; False when another host already holds that number."""
        now = time.time()
        try:
            with self.db.begin(write=True) as conn:
                conn.execute(insert(program_versions).values(
                    signature=signature, version=version, fingerprint=fingerprint, metadata=_dump(metadata),
                    state=_dump(state), created_at=now, updated_at=now))
        except IntegrityError:
            return False
        return True

    def forget(self, signature: str, version: str) -> None:
        """Remove a claimed row whose files could not be written (the number stays free)."""
        with self.db.begin(write=True) as conn:
            conn.execute(program_versions.delete().where(and_(program_versions.c.signature == signature,
                                                              program_versions.c.version == version)))

    def get(self, signature: str, version: str) -> VersionRow | None:
        with self.db.begin() as conn:
            row = conn.execute(select(program_versions).where(and_(
                program_versions.c.signature == signature, program_versions.c.version == version))).first()
        if row is None:
            return None
        return VersionRow(row.signature, row.version, row.fingerprint, json.loads(row.metadata), json.loads(row.state))

    def names(self, signature: str) -> list[str]:
        """The versions of ``signature`` the database holds."""
        with self.db.begin() as conn:
            return list(conn.scalars(select(program_versions.c.version)
                                     .where(program_versions.c.signature == signature)))

    def signatures(self) -> set[str]:
        """Every signature with a version in the database."""
        with self.db.begin() as conn:
            return set(conn.scalars(select(program_versions.c.signature).distinct()))

    def fingerprints(self, pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
        """The recorded fingerprint of each (signature, version) the database holds (one query)."""
        pairs = list(dict.fromkeys(pairs))
        if not pairs:
            return {}
        condition = or_(*[and_(program_versions.c.signature == s, program_versions.c.version == v) for s, v in pairs])
        with self.db.begin() as conn:
            rows = conn.execute(select(program_versions.c.signature, program_versions.c.version,
                                       program_versions.c.fingerprint).where(condition))
            return {(r.signature, r.version): r.fingerprint for r in rows}

    def rewrite(self, signature: str, version: str, fingerprint: str, metadata: dict[str, Any],
                state: dict[str, Any]) -> int:
        """Replace a version's state and metadata (the right to deletion); rows changed (0: not in the database)."""
        with self.db.begin(write=True) as conn:
            return conn.execute(update(program_versions).where(and_(
                program_versions.c.signature == signature, program_versions.c.version == version)).values(
                fingerprint=fingerprint, metadata=_dump(metadata), state=_dump(state),
                updated_at=time.time())).rowcount


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
