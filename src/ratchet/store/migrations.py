"""Explicit, numbered schema migrations for the state database.

Each migration is a version number, a name and a function that runs DDL on a
``Connection`` (SQLAlchemy Core objects, or plain SQL both SQLite and PostgreSQL
accept). ``migrate`` applies the pending ones in order, each in its own transaction
together with its row in ``schema_migrations``, under a lock that every process takes
first (PostgreSQL: ``pg_advisory_xact_lock``; SQLite: ``BEGIN IMMEDIATE``), so any
number of processes may start at once and each migration runs exactly once.

To change the schema, append a ``Migration`` with the next version to ``MIGRATIONS``
and update ``ratchet.store.tables`` to match. Never edit a released migration:
databases in the field have already run it. A migration keeps its own frozen copy of
the tables it creates (not the live objects of ``tables.py``, which move on).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)

from ratchet.errors import ConfigError
from ratchet.store.tables import schema_migrations

if TYPE_CHECKING:
    from ratchet.store.db import StateDB

__all__ = ["MIGRATIONS", "Migration", "applied_versions", "migrate"]

log = logging.getLogger(__name__)

# One advisory-lock key for "Ratchet is migrating this database" (stable across processes and hosts).
_PG_LOCK_KEY = int.from_bytes(hashlib.sha256(b"ratchet:schema_migrations").digest()[:8], "big", signed=True)


@dataclass(frozen=True)
class Migration:
    """One schema change: applied once, in ``version`` order, inside a transaction."""

    version: int
    name: str
    apply: Callable[[Connection], None]


def _m001_outcome_counters(conn: Connection) -> None:
    """Per-arm, per-minute outcome counters, error counts, latency histograms, the request index, feedback."""
    md = MetaData()

    def arm_key() -> list[Column]:
        return [
            Column("signature", String(200), nullable=False),
            Column("version", String(200), nullable=False),
            Column("arm", String(64), nullable=False),
            Column("minute", BigInteger, nullable=False),
        ]

    Table(
        "arm_outcomes", md, *arm_key(),
        Column("requests", BigInteger, nullable=False),
        Column("errors", BigInteger, nullable=False),
        Column("latency_sum_s", Float, nullable=False),
        Column("latency_sumsq", Float, nullable=False),
        Column("tokens_in", BigInteger, nullable=False),
        Column("tokens_out", BigInteger, nullable=False),
        Column("cost_usd", Float, nullable=False),
        PrimaryKeyConstraint("signature", "version", "arm", "minute", name="pk_arm_outcomes"),
    )
    Table(
        "arm_errors", md, *arm_key(),
        Column("error_type", String(200), nullable=False),
        Column("count", BigInteger, nullable=False),
        PrimaryKeyConstraint("signature", "version", "arm", "minute", "error_type", name="pk_arm_errors"),
    )
    Table(
        "arm_latency_buckets", md, *arm_key(),
        Column("bucket", Integer, nullable=False),
        Column("count", BigInteger, nullable=False),
        PrimaryKeyConstraint("signature", "version", "arm", "minute", "bucket", name="pk_arm_latency_buckets"),
    )
    Table(
        "request_index", md,
        Column("request_id", String(200), primary_key=True),
        Column("signature", String(200), nullable=False),
        Column("version", String(200), nullable=False),
        Column("arm", String(64), nullable=False),
        Column("created_at", Float, nullable=False),
        Index("ix_request_index_created_at", "created_at"),
    )
    Table(
        "feedback", md,
        Column("request_id", String(200), primary_key=True),
        Column("score", Float, nullable=False),
        Column("correction", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        Index("ix_feedback_created_at", "created_at"),
    )
    md.create_all(conn, checkfirst=False)


def _m002_experiments(conn: Connection) -> None:
    """A/B experiments (at most one live per signature) and their transition events."""
    md = MetaData()
    experiments = Table(
        "experiments", md,
        Column("experiment_id", String(200), primary_key=True),
        Column("signature", String(200), nullable=False),
        Column("baseline_version", String(200), nullable=False),
        Column("candidate_version", String(200), nullable=False),
        Column("status", String(32), nullable=False),
        Column("stages", Text, nullable=False),
        Column("stage_index", Integer, nullable=False),
        Column("stage_started_at", Float, nullable=False),
        Column("stage_start_requests", Integer, nullable=False),
        Column("paused_at", Float, nullable=True),
        Column("paused_seconds", Float, nullable=False),
        Column("min_stage_minutes", Float, nullable=False),
        Column("min_stage_requests", Integer, nullable=False),
        Column("salt", String(200), nullable=False),
        Column("config", Text, nullable=False),
        Column("reason", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("ended_at", Float, nullable=True),
        Column("revision", Integer, nullable=False),
        Column("lease_owner", String(200), nullable=True),
        Column("lease_expires_at", Float, nullable=True),
        Index("ix_experiments_signature", "signature"),
    )
    Index("ux_experiments_one_live_per_signature", experiments.c.signature, unique=True,
          sqlite_where=experiments.c.status.in_(["running", "paused"]),
          postgresql_where=experiments.c.status.in_(["running", "paused"]))
    Table(
        "experiment_events", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("experiment_id", String(200), nullable=False),
        Column("at", Float, nullable=False),
        Column("actor", String(100), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("from_status", String(32), nullable=True),
        Column("to_status", String(32), nullable=False),
        Column("from_stage", Integer, nullable=True),
        Column("to_stage", Integer, nullable=True),
        Column("reason", Text, nullable=True),
        Column("metrics", Text, nullable=True),
        Index("ix_experiment_events_experiment", "experiment_id", "id"),
    )
    md.create_all(conn, checkfirst=False)


def _m003_production_pointers(conn: Connection) -> None:
    """The production version of each signature (compare-and-set by revision) and every change of it."""
    md = MetaData()
    Table(
        "production_pointers", md,
        Column("signature", String(200), primary_key=True),
        Column("version", String(200), nullable=False),
        Column("revision", Integer, nullable=False),
        Column("updated_at", Float, nullable=False),
        Column("actor", String(100), nullable=False),
        Column("reason", Text, nullable=True),
    )
    Table(
        "production_events", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("signature", String(200), nullable=False),
        Column("at", Float, nullable=False),
        Column("actor", String(100), nullable=False),
        Column("from_version", String(200), nullable=True),
        Column("to_version", String(200), nullable=False),
        Column("reason", Text, nullable=True),
        Column("experiment_id", String(200), nullable=True),
        Index("ix_production_events_signature", "signature", "id"),
    )
    md.create_all(conn, checkfirst=False)


def _m004_counters_per_experiment(conn: Connection) -> None:
    """Per-arm counters keyed by experiment too, so an experiment counts only what it served.

    The three counter tables are rebuilt with an ``experiment_id`` key column (``""`` for requests
    served outside any experiment, which is what every existing row becomes): SQLite cannot change
    a primary key in place. New table, copy, drop, rename — inside the migration's transaction.
    """
    specs = {
        "arm_outcomes": ([("requests", BigInteger), ("errors", BigInteger), ("latency_sum_s", Float),
                          ("latency_sumsq", Float), ("tokens_in", BigInteger), ("tokens_out", BigInteger),
                          ("cost_usd", Float)], []),
        "arm_errors": ([("error_type", String(200)), ("count", BigInteger)], ["error_type"]),
        "arm_latency_buckets": ([("bucket", Integer), ("count", BigInteger)], ["bucket"]),
    }
    postgres = conn.dialect.name == "postgresql"
    for name, (rest, extra_key) in specs.items():
        md = MetaData()
        new = Table(
            f"{name}_v4", md,
            Column("signature", String(200), nullable=False),
            Column("version", String(200), nullable=False),
            Column("arm", String(64), nullable=False),
            Column("experiment_id", String(200), nullable=False, server_default=""),
            Column("minute", BigInteger, nullable=False),
            *[Column(column, kind, nullable=False) for column, kind in rest],
            # PostgreSQL's constraint names are unique per schema (renamed below once the old table is gone);
            # SQLite keeps the name as written.
            PrimaryKeyConstraint("signature", "version", "arm", "experiment_id", "minute", *extra_key,
                                 name=f"pk_{name}_v4" if postgres else f"pk_{name}"),
        )
        new.create(conn)
        copied = ["signature", "version", "arm", "minute", *[column for column, _ in rest]]
        conn.execute(text(f"INSERT INTO {name}_v4 ({', '.join(copied)}) SELECT {', '.join(copied)} FROM {name}"))
        conn.execute(text(f"DROP TABLE {name}"))
        conn.execute(text(f"ALTER TABLE {name}_v4 RENAME TO {name}"))
        if postgres:
            conn.execute(text(f"ALTER TABLE {name} RENAME CONSTRAINT pk_{name}_v4 TO pk_{name}"))


def _m005_leases(conn: Connection) -> None:
    """Named leases with a heartbeat: which process may act (the rollout controller), and whether it lives."""
    md = MetaData()
    Table(
        "leases", md,
        Column("name", String(200), primary_key=True),
        Column("owner", String(200), nullable=False),
        Column("acquired_at", Float, nullable=False),
        Column("expires_at", Float, nullable=False),
        Column("heartbeat_at", Float, nullable=False),
        Column("info", Text, nullable=True),
    )
    md.create_all(conn, checkfirst=False)


def _m006_shadow(conn: Connection) -> None:
    """Shadow experiments: ``shadow`` becomes a live status (at most one live experiment per signature still
    holds), and the shadow arm's agreement with production is counted per minute."""
    conn.execute(text("DROP INDEX ux_experiments_one_live_per_signature"))
    md = MetaData()
    experiments = Table("experiments", md, Column("signature", String(200)), Column("status", String(32)))
    live = ["shadow", "running", "paused"]
    Index("ux_experiments_one_live_per_signature", experiments.c.signature, unique=True,
          sqlite_where=experiments.c.status.in_(live), postgresql_where=experiments.c.status.in_(live)).create(conn)
    Table(
        "shadow_agreement", md,
        Column("signature", String(200), nullable=False),
        Column("version", String(200), nullable=False),
        Column("experiment_id", String(200), nullable=False),
        Column("minute", BigInteger, nullable=False),
        Column("compared", BigInteger, nullable=False),
        Column("agreed", BigInteger, nullable=False),
        PrimaryKeyConstraint("signature", "version", "experiment_id", "minute", name="pk_shadow_agreement"),
    ).create(conn)


def _m007_canary_runs(conn: Connection) -> None:
    """Canary runs: one row per version scored on a signature's probe set, with every probe's score.

    Number 7 depends only on migrations 1–5 (it creates a new table and touches nothing else).
    """
    md = MetaData()
    Table(
        "canary_runs", md,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("pass_id", String(64), nullable=False),
        Column("signature", String(200), nullable=False),
        Column("version", String(200), nullable=False),
        Column("at", Float, nullable=False),
        Column("probe_set", String(64), nullable=False),
        Column("n", Integer, nullable=False),
        Column("score", Float, nullable=False),
        Column("errors", Integer, nullable=False),
        Column("parse_failures", Integer, nullable=False),
        Column("seconds", Float, nullable=False),
        Column("scores", Text, nullable=False),
        Index("ix_canary_runs_signature_version_at", "signature", "version", "at"),
    )
    md.create_all(conn, checkfirst=False)


def _m008_api_keys(conn: Connection) -> None:
    """API keys: a public id, a name, roles and the SHA-256 of the secret part (never the key itself)."""
    md = MetaData()
    Table(
        "api_keys", md,
        Column("key_id", String(32), primary_key=True),
        Column("name", String(200), nullable=False),
        Column("roles", String(200), nullable=False),
        Column("secret_sha256", String(64), nullable=False),
        Column("created_at", Float, nullable=False),
        Column("created_by", String(200), nullable=False),
        Column("expires_at", Float, nullable=True),
        Column("revoked_at", Float, nullable=True),
        Column("last_used_at", Float, nullable=True),
        Column("rotated_to", String(32), nullable=True),
        Index("ix_api_keys_name", "name"),
    )
    md.create_all(conn, checkfirst=False)


def _m009_feedback_revisions(conn: Connection) -> None:
    """Feedback says who sent it and keeps every revision: a later score on a request no longer overwrites silently."""
    conn.execute(text("ALTER TABLE feedback ADD COLUMN principal VARCHAR(200)"))
    conn.execute(text("ALTER TABLE feedback ADD COLUMN revision INTEGER NOT NULL DEFAULT 1"))
    md = MetaData()
    Table(
        "feedback_revisions", md,
        Column("request_id", String(200), nullable=False),
        Column("revision", Integer, nullable=False),
        Column("score", Float, nullable=False),
        Column("correction", Text, nullable=True),
        Column("principal", String(200), nullable=True),
        Column("created_at", Float, nullable=False),
        PrimaryKeyConstraint("request_id", "revision", name="pk_feedback_revisions"),
        Index("ix_feedback_revisions_created_at", "created_at"),
    )
    md.create_all(conn, checkfirst=False)
    conn.execute(text("INSERT INTO feedback_revisions (request_id, revision, score, correction, principal, created_at) "
                      "SELECT request_id, 1, score, correction, NULL, created_at FROM feedback"))


def _m010_request_index_user(conn: Connection) -> None:
    """The keyed pseudonym of the user a request was served for (nullable: calls without a user id have none),
    indexed so a deletion request finds the user's request ids.

    Number 10 depends only on migration 1 (it adds a column and an index to ``request_index``).
    """
    conn.execute(text("ALTER TABLE request_index ADD COLUMN user_pseudonym VARCHAR(64)"))
    conn.execute(text("CREATE INDEX ix_request_index_user_pseudonym ON request_index (user_pseudonym)"))


def _m011_annotation_queue(conn: Connection) -> None:
    """The annotation queue: tasks (one per signature, request and week) under leases, and their annotations
    (at most one per task and annotator).

    Number 11 depends on no other migration (it creates two new tables).
    """
    md = MetaData()
    Table(
        "annotation_tasks", md,
        Column("task_id", String(32), primary_key=True),
        Column("signature", String(200), nullable=False),
        Column("request_id", String(200), nullable=False),
        Column("week", String(16), nullable=False),
        Column("inputs", Text, nullable=False),
        Column("output", Text, nullable=False),
        Column("cluster_id", String(200), nullable=True),
        Column("cluster_label", Text, nullable=True),
        Column("priority", Float, nullable=False),
        Column("needed", Integer, nullable=False),
        Column("status", String(16), nullable=False),
        Column("lease_holder", String(200), nullable=True),
        Column("lease_expires_at", Float, nullable=True),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        UniqueConstraint("signature", "request_id", "week", name="ux_annotation_tasks_request_week"),
        Index("ix_annotation_tasks_queue", "status", "signature", "priority"),
    )
    Table(
        "annotations", md,
        Column("task_id", String(32), nullable=False),
        Column("annotator", String(200), nullable=False),
        Column("kind", String(16), nullable=False),
        Column("values", Text, nullable=True),
        Column("reason", Text, nullable=True),
        Column("created_at", Float, nullable=False),
        PrimaryKeyConstraint("task_id", "annotator", name="pk_annotations"),
        Index("ix_annotations_annotator", "annotator"),
    )
    md.create_all(conn, checkfirst=False)


def _m012_annotation_imports(conn: Connection) -> None:
    """The ledger of phase 2 (``ratchet flywheel run --continue``): each done annotation task it imported, where
    to (golden, training, or left out as rejected or in conflict) and into which version. No user text.

    Number 12 depends on no other migration (it creates a new table).
    """
    md = MetaData()
    Table(
        "annotation_imports", md,
        Column("task_id", String(32), primary_key=True),
        Column("signature", String(200), nullable=False),
        Column("week", String(16), nullable=False),
        Column("destination", String(16), nullable=False),
        Column("version", String(200), nullable=True),
        Column("imported_week", String(16), nullable=False),
        Column("imported_at", Float, nullable=False),
        Index("ix_annotation_imports_imported_week", "imported_week", "signature"),
    )
    md.create_all(conn, checkfirst=False)


def _m013_program_versions(conn: Connection) -> None:
    """Program versions in the database (PostgreSQL: the hosts share them): each version's DSPy state and
    metadata as JSON text with its fingerprint. A version is written once; only the right to deletion edits one
    (its demos removed, a new fingerprint)."""
    md = MetaData()
    Table(
        "program_versions", md,
        Column("signature", String(200), nullable=False),
        Column("version", String(200), nullable=False),
        Column("fingerprint", String(64), nullable=False),
        Column("metadata", Text, nullable=False),
        Column("state", Text, nullable=False),
        Column("created_at", Float, nullable=False),
        Column("updated_at", Float, nullable=False),
        PrimaryKeyConstraint("signature", "version", name="pk_program_versions"),
    )
    md.create_all(conn, checkfirst=False)


def _m014_telemetry_records(conn: Connection) -> None:
    """The shared telemetry sink (PostgreSQL, several hosts): each sampled record as its JSON line (PII redacted
    before it gets here), with the columns the cycle, retention and the right to deletion select on."""
    md = MetaData()
    Table(
        "telemetry_records", md,
        Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
        Column("timestamp_ms", BigInteger, nullable=False),
        Column("host", String(200), nullable=False),
        Column("kind", String(32), nullable=False),
        Column("signature", String(200), nullable=True),
        Column("request_id", String(200), nullable=True),
        Column("user_pseudonym", String(64), nullable=True),
        Column("line", Text, nullable=False),
        Index("ix_telemetry_records_timestamp", "timestamp_ms"),
        Index("ix_telemetry_records_user", "user_pseudonym"),
        Index("ix_telemetry_records_request", "request_id"),
    )
    md.create_all(conn, checkfirst=False)


MIGRATIONS: list[Migration] = [
    Migration(1, "outcome counters, request index and feedback", _m001_outcome_counters),
    Migration(2, "experiments and their events", _m002_experiments),
    Migration(3, "production pointers and their history", _m003_production_pointers),
    Migration(4, "per-arm counters keyed by experiment", _m004_counters_per_experiment),
    Migration(5, "leases with heartbeats", _m005_leases),
    Migration(6, "shadow experiments and their agreement counters", _m006_shadow),
    Migration(7, "canary runs", _m007_canary_runs),
    Migration(8, "API keys", _m008_api_keys),
    Migration(9, "feedback principals and revisions", _m009_feedback_revisions),
    Migration(10, "user pseudonyms in the request index", _m010_request_index_user),
    Migration(11, "the annotation queue", _m011_annotation_queue),
    Migration(12, "the annotation import ledger", _m012_annotation_imports),
    Migration(13, "program versions", _m013_program_versions),
    Migration(14, "the shared telemetry sink", _m014_telemetry_records),
]
"""Every migration, in order. Append new ones; never edit or reorder released ones."""


def migrate(db: StateDB, migrations: Sequence[Migration] | None = None) -> list[int]:
    """Apply pending migrations in order; returns the versions this call applied (often none).

    Safe to run from several processes at once and idempotent: whoever takes the lock
    first applies a migration, the others then find it recorded and skip it.
    """
    migrations = MIGRATIONS if migrations is None else migrations
    _check_order(migrations)
    applied: list[int] = []
    while True:
        with db.transaction(write=True) as conn:
            _lock(conn)
            done = _applied(conn)
            pending = [m for m in migrations if m.version not in done]
            if not pending:
                _warn_if_newer(db, done, migrations)
                return applied
            migration = pending[0]
            migration.apply(conn)
            conn.execute(
                insert(schema_migrations).values(version=migration.version, name=migration.name,
                                                 applied_at=time.time())
            )
        log.info("state database %s: applied migration %d (%s)", db.url, migration.version, migration.name)
        applied.append(migration.version)


def applied_versions(db: StateDB) -> list[int]:
    """Versions recorded in ``schema_migrations`` (empty for a new database), ascending."""
    with db.transaction() as conn:
        return sorted(_applied(conn)) if inspect(conn).has_table(schema_migrations.name) else []


def _lock(conn: Connection) -> None:
    """Serialise migrators (SQLite already holds the write lock: ``BEGIN IMMEDIATE``) and create the log table."""
    if conn.dialect.name == "postgresql":
        schema = conn.scalar(text("SELECT current_schema()"))
        if schema is None:
            search_path = conn.scalar(text("SHOW search_path"))
            raise ConfigError(
                f"database_url: no schema of search_path {search_path!r} exists; create it first (CREATE SCHEMA …)"
            )
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK_KEY})
    schema_migrations.create(conn, checkfirst=True)


def _applied(conn: Connection) -> set[int]:
    return set(conn.scalars(select(schema_migrations.c.version)))


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if any(v <= 0 for v in versions) or versions != sorted(set(versions)):
        raise ValueError(f"migration versions must be positive, unique and ascending, got {versions}")


def _warn_if_newer(db: StateDB, done: set[int], migrations: Sequence[Migration]) -> None:
    unknown = done - {m.version for m in migrations}
    if unknown:
        log.warning("state database %s has migrations this Ratchet does not know (%s): is it older than "
                    "another process using the database?", db.url, sorted(unknown))
