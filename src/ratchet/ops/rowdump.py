"""Backing up the state database: every Ratchet table's rows, read in one snapshot, as row files.

The files (format: :mod:`ratchet.ops.rowfiles`) hold data only, whatever the dialect, so an
archive restores into SQLite or PostgreSQL alike and a restore never runs SQL from it.
"""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import inspect, select

from ratchet.ops.rowfiles import ALLOWED, member_name
from ratchet.store.db import StateDB
from ratchet.store.private import create_private
from ratchet.store.tables import schema_migrations

__all__ = ["dump_tables"]

_BATCH = 1000


def dump_tables(db: StateDB, scratch: Path) -> tuple[dict[str, int], list[int], list[tuple[str, Path]]]:
    """Write each existing Ratchet table of ``db`` to a row file in ``scratch``.

    Returns the row count per table, the applied migration versions and (member name, file)
    pairs to archive. One snapshot transaction: the tables agree with each other.
    """
    counts: dict[str, int] = {}
    files: list[tuple[str, Path]] = []
    versions: list[int] = []
    with db.transaction(snapshot=True) as conn:
        inspector = inspect(conn)
        present = set(inspector.get_table_names())
        for name, table in ALLOWED.items():
            if name not in present:
                continue
            existing = {column["name"] for column in inspector.get_columns(name)}
            columns = [column for column in table.c if column.name in existing]
            target = scratch / f"{name}.jsonl"
            create_private(target)
            key = [column for column in table.primary_key.columns if column.name in existing]
            query = select(*columns).order_by(*(key or columns)).execution_options(yield_per=_BATCH)
            count = 0
            with open(target, "w", encoding="utf-8") as out:
                out.write(json.dumps({"table": name, "columns": [c.name for c in columns]}) + "\n")
                for batch in conn.execute(query).partitions():
                    out.writelines(json.dumps(list(row), ensure_ascii=False) + "\n" for row in batch)
                    count += len(batch)
            counts[name] = count
            files.append((member_name(name), target))
        if schema_migrations.name in present:
            versions = sorted(conn.scalars(select(schema_migrations.c.version)))
    return counts, versions, files
