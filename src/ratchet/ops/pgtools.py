"""PostgreSQL for backups: which schema holds Ratchet's tables, and whether a target schema is empty.

Ratchet's tables live in the connection's current schema (``public``, or the one named by
``options=-csearch_path=…`` in the URL). Backups read and write rows through SQLAlchemy
(:mod:`ratchet.ops.rowdump`, :mod:`ratchet.ops.rowload`): no ``pg_dump`` or ``psql`` is run.
"""

from __future__ import annotations

from sqlalchemy import text

from ratchet.errors import BackupError
from ratchet.store.db import StateDB

__all__ = ["current_schema", "relation_count"]

_RELKINDS = ("r", "p", "v", "m", "S", "f")  # tables, partitioned tables, views, materialized views, sequences, foreign


def current_schema(db: StateDB) -> str:
    """The schema the state database's tables live in (the connection's ``current_schema()``)."""
    with db.engine.connect() as conn:
        schema = conn.execute(text("SELECT current_schema()")).scalar_one_or_none()
    if not schema:
        raise BackupError(f"{db.url}: no current schema (does the search_path name an existing schema?)")
    return str(schema)


def relation_count(db: StateDB, schema: str) -> int:
    """Tables, views and sequences in ``schema``: 0 means the schema is empty."""
    query = text("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                 "WHERE n.nspname = :schema AND c.relkind = ANY(:kinds)")
    with db.engine.connect() as conn:
        return int(conn.execute(query, {"schema": schema, "kinds": list(_RELKINDS)}).scalar_one())
