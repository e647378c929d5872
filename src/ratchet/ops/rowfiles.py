"""The state database in a backup: one JSON-lines file of rows per Ratchet table, and nothing else.

``database/<table>.jsonl`` starts with a header line ``{"table": …, "columns": […]}``; every
other line is one row, a JSON array in the header's column order. Only Ratchet's own tables
(:data:`ALLOWED`, from ``ratchet.store.tables.metadata``) may appear, and every value must have
its column's type (integers, numbers, strings or null): a restore reads data, never runs it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Table

from ratchet.errors import BackupError
from ratchet.store.tables import metadata

__all__ = ["ALLOWED", "DIRECTORY", "member_name", "read_rows", "table_of_member"]

DIRECTORY = "database"
_SUFFIX = ".jsonl"
ALLOWED: dict[str, Table] = {table.name: table for table in metadata.sorted_tables}
"""Ratchet's tables (``schema_migrations`` included), in dependency order: the only ones a backup holds."""
_MAX_LINE = 64 * 1024 * 1024


def member_name(table: str) -> str:
    """The archive member that holds ``table``'s rows."""
    return f"{DIRECTORY}/{table}{_SUFFIX}"


def table_of_member(name: str) -> Table:
    """The allow-listed table ``database/<table>.jsonl`` holds; ``BackupError`` for any other member."""
    stem = name.removeprefix(f"{DIRECTORY}/")
    table = ALLOWED.get(stem.removesuffix(_SUFFIX)) if stem.endswith(_SUFFIX) and "/" not in stem else None
    if table is None:
        raise BackupError(f"unexpected database member {name!r}: a backup holds only row files of Ratchet's "
                          f"tables ({', '.join(sorted(ALLOWED))}) as {DIRECTORY}/<table>{_SUFFIX}")
    return table


def read_rows(path: Path, table: Table) -> Iterator[dict[str, Any]]:
    """The rows of ``table`` in the file at ``path``, each checked against the table's columns and types."""
    with open(path, encoding="utf-8") as fh:
        header = _json_line(fh.readline(), path, 1)
        if not isinstance(header, dict) or header.get("table") != table.name:
            raise BackupError(f"{path.name}: line 1 is not the header of table {table.name!r}")
        columns = header.get("columns")
        if (not isinstance(columns, list) or not columns or len(set(columns)) != len(columns)
                or any(not isinstance(c, str) or c not in table.c for c in columns)):
            raise BackupError(f"{path.name}: the header names columns {table.name!r} does not have: {columns!r}")
        types = [table.c[c].type.python_type for c in columns]
        for number, line in enumerate(fh, start=2):
            row = _json_line(line, path, number)
            if not isinstance(row, list) or len(row) != len(columns):
                raise BackupError(f"{path.name}: line {number} is not a row of {len(columns)} values")
            for column, kind, value in zip(columns, types, row, strict=True):
                if not _fits(value, kind):
                    raise BackupError(f"{path.name}: line {number}: column {column!r} holds {type(value).__name__} "
                                      f"{str(value)[:40]!r}, not {kind.__name__}")
            yield dict(zip(columns, row, strict=True))


def _fits(value: Any, kind: type) -> bool:
    """``value`` is null or of ``kind`` (an integer also fits a float column; a bool fits nothing)."""
    if value is None:
        return True
    if isinstance(value, bool):
        return False
    return isinstance(value, (int, float)) if kind is float else isinstance(value, kind)


def _json_line(line: str, path: Path, number: int) -> Any:
    if len(line) > _MAX_LINE:
        raise BackupError(f"{path.name}: line {number} is too long")
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise BackupError(f"{path.name}: line {number} is not valid JSON: {exc}") from None
