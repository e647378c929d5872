"""PostgreSQL dumps for backups: ``pg_dump`` of Ratchet's schema, restored by ``psql`` into any schema.

Ratchet's tables live in the connection's current schema (``public``, or the one named by
``options=-csearch_path=…`` in the URL). ``pg_dump --schema`` qualifies every name with that
schema, so :func:`retarget_dump` rewrites the qualifications (never the ``COPY`` data) to
restore into another schema, e.g. from production's into a fresh one. The restore runs in
one transaction with ``ON_ERROR_STOP``: it applies completely or not at all.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import URL

from ratchet.errors import BackupError
from ratchet.store.db import StateDB, normalize_url

__all__ = [
    "current_schema",
    "dump_schema",
    "find_pg_tool",
    "quote_ident",
    "relation_count",
    "restore_dump",
    "retarget_dump",
]

_SIMPLE_IDENT = re.compile(r"^[a-z_][a-z0-9_]*$")
_COPY_START = re.compile(r"^COPY .* FROM stdin;$")
_RELKINDS = ("r", "p", "v", "m", "S", "f")  # tables, partitioned tables, views, materialized views, sequences, foreign
_TIMEOUT_S = 3600


def find_pg_tool(name: str) -> str:
    """``pg_dump`` or ``psql``: the newest ``/usr/lib/postgresql/<major>/bin`` one, else the one on PATH."""
    versioned = []
    for candidate in glob.glob(f"/usr/lib/postgresql/*/bin/{name}") + glob.glob(f"/usr/pgsql-*/bin/{name}"):
        major = re.search(r"(\d+)", Path(candidate).parent.parent.name)
        if major and os.access(candidate, os.X_OK):
            versioned.append((int(major.group(1)), candidate))
    if versioned:
        return max(versioned)[1]
    found = shutil.which(name)
    if found:
        return found
    raise BackupError(f"{name} not found: install the PostgreSQL client (Debian: apt-get install postgresql-client)")


def _conninfo(url: URL) -> tuple[str, dict[str, str]]:
    """A libpq connection string for ``url`` and the environment with its password (never on the command line,
    which every user of the host can read)."""
    params: dict[str, str] = {}
    if url.host:
        params["host"] = url.host
    if url.port:
        params["port"] = str(url.port)
    if url.database:
        params["dbname"] = url.database
    if url.username:
        params["user"] = url.username
    password = url.password
    for key, value in url.query.items():
        value = value[-1] if isinstance(value, tuple) else value
        if key == "password":  # a password given as a parameter: also kept off the command line
            password = value
            continue
        params[key] = value
    conninfo = " ".join(f"{key}='{_escape(value)}'" for key, value in params.items())
    env = dict(os.environ)  # PG* variables apply as they do to the state database's own connections
    if password is not None:
        env["PGPASSWORD"] = str(password)
    return conninfo, env


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def quote_ident(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


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


def dump_schema(url: str, schema: str, output: Path) -> None:
    """``pg_dump`` one schema (a consistent snapshot: pg_dump reads in one transaction) as plain SQL."""
    parsed = normalize_url(url)
    conninfo, env = _conninfo(parsed)
    argv = [find_pg_tool("pg_dump"), "--format=plain", "--no-owner", "--no-privileges", "--encoding=UTF8",
            f"--schema={quote_ident(schema)}", f"--file={output}", f"--dbname={conninfo}"]
    _run(argv, env, "pg_dump")


def retarget_dump(sql: str, source: str, target: str, *, force: bool = False) -> str:
    """``sql`` (a ``pg_dump --schema=source`` dump) rewritten to create its objects in ``target``.

    Schema qualifications outside ``COPY`` data become ``"target".``; ``CREATE SCHEMA`` becomes
    ``CREATE SCHEMA IF NOT EXISTS``; comments on the source schema are dropped. With ``force``,
    the target's existing tables, views and sequences are dropped first (same transaction).
    """
    names = [re.escape(quote_ident(source))]
    if _SIMPLE_IDENT.match(source):
        names.append(re.escape(source))
    qualified = re.compile(r"(?<![\w$\"])(?:" + "|".join(names) + r")\.")
    create = re.compile(r"^CREATE SCHEMA (?:" + "|".join(names) + r");$")
    comment = re.compile(r"^COMMENT ON SCHEMA (?:" + "|".join(names) + r") IS ")
    target_q = quote_ident(target)
    out = []
    if force:
        out.append(_drop_relations_sql(target))
    in_copy = False
    for line in sql.splitlines(keepends=True):
        if in_copy:
            out.append(line)
            in_copy = line.rstrip("\n") != "\\."
            continue
        stripped = line.rstrip("\n")
        if create.match(stripped):
            out.append(f"CREATE SCHEMA IF NOT EXISTS {target_q};\n")
            continue
        if comment.match(stripped):
            continue
        rewritten = qualified.sub(lambda _m: f"{target_q}.", line)
        out.append(rewritten)
        in_copy = bool(_COPY_START.match(stripped))
    return "".join(out)


def _drop_relations_sql(schema: str) -> str:
    literal = "'" + schema.replace("'", "''") + "'"
    kinds = ", ".join(f"'{k}'" for k in _RELKINDS)
    return f"""DO $ratchet$
DECLARE r record;
BEGIN
  FOR r IN SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = {literal} AND c.relkind IN ({kinds}) LOOP
    EXECUTE format('DROP %s IF EXISTS %I.%I CASCADE',
      CASE r.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                     WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, {literal}, r.relname);
  END LOOP;
END
$ratchet$;
"""


def restore_dump(url: str, sql_file: Path) -> None:
    """Run ``sql_file`` with ``psql`` in one transaction, stopping at the first error."""
    conninfo, env = _conninfo(normalize_url(url))
    argv = [find_pg_tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
            f"--file={sql_file}", f"--dbname={conninfo}"]
    _run(argv, env, "psql")


def _run(argv: list[str], env: dict[str, str], tool: str) -> None:
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackupError(f"{tool} failed: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        detail = next((line for line in lines if "ERROR" in line or "error" in line), lines[0] if lines else "")
        raise BackupError(f"{tool} exited with {done.returncode}: {detail.strip()}")
