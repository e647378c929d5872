"""Restoring the state database from row files: Ratchet's migrations build the schema, parameterised inserts fill it.

Nothing from the archive is executed: the target is migrated by this Ratchet, every row file is
checked (:func:`ratchet.ops.rowfiles.read_rows`) and inserted with SQLAlchemy Core, all tables in
one transaction, so a bad row leaves the target as it was. ``schema_migrations`` is not copied:
the target records its own migrations; an archive from a newer schema is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import islice
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, delete, func, insert, select, text

from ratchet.errors import BackupError
from ratchet.ops.rowfiles import ALLOWED, member_name, read_rows
from ratchet.store.db import StateDB
from ratchet.store.migrations import MIGRATIONS
from ratchet.store.tables import schema_migrations

__all__ = ["check_schema_versions", "load_tables"]

_BATCH = 1000


def check_schema_versions(versions: Iterable[Any]) -> None:
    """``BackupError`` unless every migration version the backup's database had is one this Ratchet knows."""
    known = {migration.version for migration in MIGRATIONS}
    unknown = sorted(v for v in versions if v not in known)
    if unknown:
        raise BackupError(f"the backup's database has migrations this Ratchet does not know ({unknown}): restore it "
                          "with the Ratchet version that wrote it (or a newer one)")


def load_tables(db: StateDB, staged: Path, tables: dict[str, int], *, replace: bool) -> dict[str, int]:
    """Migrate ``db``, then insert the rows of each table in ``tables`` from ``staged`` (the extracted archive).

    With ``replace``, Ratchet's tables are emptied first (same transaction). Returns rows inserted per table.
    """
    db.ensure_migrated()
    inserted: dict[str, int] = {}
    with db.transaction(write=True) as conn:
        if replace:
            for table in reversed(list(ALLOWED.values())):
                if table is not schema_migrations:
                    conn.execute(delete(table))
        for name, table in ALLOWED.items():
            if name not in tables or table is schema_migrations:
                continue
            inserted[name] = _insert(conn, table, staged / member_name(name))
            if inserted[name] != tables[name]:
                raise BackupError(f"{member_name(name)} holds {inserted[name]} rows, the manifest says {tables[name]}")
            _reset_sequence(conn, table)
    return inserted


def _insert(conn: Connection, table: Table, path: Path) -> int:
    rows = read_rows(path, table)
    count = 0
    while batch := list(islice(rows, _BATCH)):
        conn.execute(insert(table), batch)
        count += len(batch)
    return count


def _reset_sequence(conn: Connection, table: Table) -> None:
    """PostgreSQL: move an autoincrement column's sequence past the restored ids (SQLite needs nothing)."""
    column = table.autoincrement_column
    if conn.dialect.name != "postgresql" or column is None:
        return
    highest = conn.scalar(select(func.max(column)))
    conn.execute(text("SELECT setval(pg_get_serial_sequence(:table, :column), :value, :called)"),
                 {"table": table.name, "column": column.name, "value": highest or 1, "called": highest is not None})
