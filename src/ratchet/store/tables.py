"""The state database's tables as SQLAlchemy Core objects: what queries are written against.

This module describes the *current* schema. It never creates anything: tables come
into being only through the numbered migrations in ``ratchet.store.migrations``, which
keep their own frozen copy of the DDL they ran. When a migration changes a table,
change its definition here in the same commit; a test checks that a migrated database
and this module agree.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

__all__ = [
    "ARM_LEN",
    "ERROR_TYPE_LEN",
    "LIVE_STATUSES",
    "NAME_LEN",
    "PSEUDONYM_COLUMN_LEN",
    "REQUEST_ID_LEN",
    "annotation_imports",
    "annotation_tasks",
    "annotations",
    "api_keys",
    "arm_errors",
    "arm_latency_buckets",
    "arm_outcomes",
    "canary_runs",
    "clean",
    "experiment_events",
    "experiments",
    "feedback",
    "feedback_revisions",
    "leases",
    "metadata",
    "production_events",
    "production_pointers",
    "program_versions",
    "request_index",
    "schema_migrations",
    "shadow_agreement",
    "telemetry_records",
]

LIVE_STATUSES: tuple[str, ...] = ("shadow", "running", "paused")
"""An experiment's statuses while it is in progress (at most one per signature: the partial unique index)."""
NAME_LEN = 200
"""Longest signature name or program version stored; longer values are truncated on write."""
ARM_LEN = 64
ERROR_TYPE_LEN = 200
REQUEST_ID_LEN = 200
PSEUDONYM_COLUMN_LEN = 64



def clean(value: Any, limit: int) -> str:
    """A string a key column accepts: ``str()``, no NUL characters (PostgreSQL refuses them), at most ``limit``.

    Every writer and reader of a key (signature, version, arm, error type, request id) goes
    through it, so a value is stored and looked up the same way.
    """
    text = value if type(value) is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text[:limit]


metadata = MetaData()

schema_migrations = Table(
    "schema_migrations",
    metadata,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("name", String(200), nullable=False),
    Column("applied_at", Float, nullable=False),  # epoch seconds
)

arm_outcomes = Table(
    "arm_outcomes",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("experiment_id", String(NAME_LEN), nullable=False, server_default=""),  # "" outside experiments
    Column("minute", BigInteger, nullable=False),  # epoch minute of the request: int(t // 60)
    Column("requests", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("latency_sum_s", Float, nullable=False, default=0.0),
    Column("latency_sumsq", Float, nullable=False, default=0.0),
    Column("tokens_in", BigInteger, nullable=False, default=0),
    Column("tokens_out", BigInteger, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("signature", "version", "arm", "experiment_id", "minute", name="pk_arm_outcomes"),
)

arm_errors = Table(
    "arm_errors",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("experiment_id", String(NAME_LEN), nullable=False, server_default=""),  # "" outside experiments
    Column("minute", BigInteger, nullable=False),
    Column("error_type", String(ERROR_TYPE_LEN), nullable=False),
    Column("count", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("signature", "version", "arm", "experiment_id", "minute", "error_type",
                         name="pk_arm_errors"),
)

arm_latency_buckets = Table(
    "arm_latency_buckets",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("experiment_id", String(NAME_LEN), nullable=False, server_default=""),  # "" outside experiments
    Column("minute", BigInteger, nullable=False),
    Column("bucket", Integer, nullable=False),  # index into outcomes.LATENCY_BUCKET_BOUNDS_S
    Column("count", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("signature", "version", "arm", "experiment_id", "minute", "bucket",
                         name="pk_arm_latency_buckets"),
)

shadow_agreement = Table(
    "shadow_agreement",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),  # the candidate run in shadow
    Column("experiment_id", String(NAME_LEN), nullable=False),
    Column("minute", BigInteger, nullable=False),
    Column("compared", BigInteger, nullable=False, default=0),  # shadow calls where both versions answered
    Column("agreed", BigInteger, nullable=False, default=0),  # ...with the same outputs
    PrimaryKeyConstraint("signature", "version", "experiment_id", "minute", name="pk_shadow_agreement"),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),  # public: the key's own prefix names it
    Column("name", String(NAME_LEN), nullable=False),
    Column("roles", String(200), nullable=False),  # comma-separated
    Column("secret_sha256", String(64), nullable=False),  # of the whole key; the key itself is never stored
    Column("created_at", Float, nullable=False),
    Column("created_by", String(NAME_LEN), nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("last_used_at", Float, nullable=True),
    Column("rotated_to", String(32), nullable=True),  # the key that replaced this one
    Index("ix_api_keys_name", "name"),
)

request_index = Table(
    "request_index",
    metadata,
    Column("request_id", String(REQUEST_ID_LEN), primary_key=True),
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("created_at", Float, nullable=False),  # epoch seconds
    Column("user_pseudonym", String(PSEUDONYM_COLUMN_LEN), nullable=True),  # keyed pseudonym; None: no user id
    Index("ix_request_index_created_at", "created_at"),
    Index("ix_request_index_user_pseudonym", "user_pseudonym"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(REQUEST_ID_LEN), primary_key=True),  # the latest revision for a request
    Column("score", Float, nullable=False),  # 0..1
    Column("correction", Text, nullable=True),  # JSON object of corrected output fields
    Column("created_at", Float, nullable=False),  # epoch seconds
    Column("principal", String(NAME_LEN), nullable=True),  # who sent it: key:<name>/<id>, local, library
    Column("revision", Integer, nullable=False, default=1),  # 1 for the first feedback, then +1 per revision
    Index("ix_feedback_created_at", "created_at"),
)

feedback_revisions = Table(
    "feedback_revisions",
    metadata,
    Column("request_id", String(REQUEST_ID_LEN), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("score", Float, nullable=False),
    Column("correction", Text, nullable=True),
    Column("principal", String(NAME_LEN), nullable=True),
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("request_id", "revision", name="pk_feedback_revisions"),
    Index("ix_feedback_revisions_created_at", "created_at"),
)

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", String(NAME_LEN), primary_key=True),
    Column("signature", String(NAME_LEN), nullable=False),
    Column("baseline_version", String(NAME_LEN), nullable=False),
    Column("candidate_version", String(NAME_LEN), nullable=False),
    Column("status", String(32), nullable=False),  # shadow | running | paused | promoted | rolled_back
    Column("stages", Text, nullable=False),  # JSON list of candidate traffic percents
    Column("stage_index", Integer, nullable=False),
    Column("stage_started_at", Float, nullable=False),
    Column("stage_start_requests", Integer, nullable=False),  # candidate requests counted when the stage began
    Column("paused_at", Float, nullable=True),
    Column("paused_seconds", Float, nullable=False),  # paused time of the current stage (not counted)
    Column("min_stage_minutes", Float, nullable=False),
    Column("min_stage_requests", Integer, nullable=False),
    Column("salt", String(NAME_LEN), nullable=False),
    Column("config", Text, nullable=False),  # JSON: the trigger thresholds this experiment uses
    Column("reason", Text, nullable=True),  # why it ended
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("ended_at", Float, nullable=True),
    Column("revision", Integer, nullable=False),  # bumped by every change: compare-and-set
    Column("lease_owner", String(NAME_LEN), nullable=True),  # the monitor that may act on it
    Column("lease_expires_at", Float, nullable=True),
    Index("ix_experiments_signature", "signature"),
)
Index("ux_experiments_one_live_per_signature", experiments.c.signature, unique=True,
      sqlite_where=experiments.c.status.in_(LIVE_STATUSES),
      postgresql_where=experiments.c.status.in_(LIVE_STATUSES))

experiment_events = Table(
    "experiment_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("experiment_id", String(NAME_LEN), nullable=False),
    Column("at", Float, nullable=False),
    Column("actor", String(100), nullable=False),  # daemon:<host:pid> or operator
    Column("kind", String(32), nullable=False),  # start | advance | pause | resume | promote | rollback
    Column("from_status", String(32), nullable=True),
    Column("to_status", String(32), nullable=False),
    Column("from_stage", Integer, nullable=True),
    Column("to_stage", Integer, nullable=True),
    Column("reason", Text, nullable=True),
    Column("metrics", Text, nullable=True),  # JSON: per-arm stats and checks at that moment
    Index("ix_experiment_events_experiment", "experiment_id", "id"),
)

production_pointers = Table(
    "production_pointers",
    metadata,
    Column("signature", String(NAME_LEN), primary_key=True),
    Column("version", String(NAME_LEN), nullable=False),  # served wherever no experiment routes traffic
    Column("revision", Integer, nullable=False),  # bumped by every change: compare-and-set
    Column("updated_at", Float, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("reason", Text, nullable=True),
)

production_events = Table(
    "production_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("signature", String(NAME_LEN), nullable=False),
    Column("at", Float, nullable=False),
    Column("actor", String(100), nullable=False),
    Column("from_version", String(NAME_LEN), nullable=True),
    Column("to_version", String(NAME_LEN), nullable=False),
    Column("reason", Text, nullable=True),
    Column("experiment_id", String(NAME_LEN), nullable=True),  # set when a promotion ended an experiment
    Index("ix_production_events_signature", "signature", "id"),
)

leases = Table(
    "leases",
    metadata,
    Column("name", String(NAME_LEN), primary_key=True),  # what the lease is for, e.g. "controller"
    Column("owner", String(NAME_LEN), nullable=False),  # host:pid of the holder
    Column("acquired_at", Float, nullable=False),  # when the current owner took it
    Column("expires_at", Float, nullable=False),  # another process may take it after this
    Column("heartbeat_at", Float, nullable=False),  # the holder's last sign of life
    Column("info", Text, nullable=True),  # JSON: what the holder last did
)

canary_runs = Table(
    "canary_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pass_id", String(64), nullable=False),  # the versions of a signature scored together share it
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("at", Float, nullable=False),  # when the run finished (epoch seconds)
    Column("probe_set", String(64), nullable=False),  # fingerprint of the probes: runs pair only on the same set
    Column("n", Integer, nullable=False),  # probes scored
    Column("score", Float, nullable=False),  # mean metric over them (a failed probe scores 0)
    Column("errors", Integer, nullable=False),  # probes whose call or metric failed (not parse failures)
    Column("parse_failures", Integer, nullable=False),  # probes whose completion could not be parsed
    Column("seconds", Float, nullable=False),  # wall time of the run
    Column("scores", Text, nullable=False),  # JSON object: probe id → score, what paired comparisons read
    Index("ix_canary_runs_signature_version_at", "signature", "version", "at"),
)

annotation_tasks = Table(
    "annotation_tasks",
    metadata,
    Column("task_id", String(32), primary_key=True),  # stable: a hash of signature, request id and week
    Column("signature", String(NAME_LEN), nullable=False),
    Column("request_id", String(NAME_LEN), nullable=False),
    Column("week", String(16), nullable=False),  # ISO week the task was made for, e.g. 2026-W48
    Column("inputs", Text, nullable=False),  # JSON: the request's inputs (PII-redacted: they come from telemetry)
    Column("output", Text, nullable=False),  # JSON: the model's output fields
    Column("cluster_id", String(NAME_LEN), nullable=True),
    Column("cluster_label", Text, nullable=True),
    Column("priority", Float, nullable=False),  # higher first
    Column("needed", Integer, nullable=False),  # annotations (by different annotators) it needs: 1 or 2
    Column("status", String(16), nullable=False),  # open | leased | done | skipped
    Column("lease_holder", String(NAME_LEN), nullable=True),  # the annotator who may submit
    Column("lease_expires_at", Float, nullable=True),  # after this the task is back in the queue
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("signature", "request_id", "week", name="ux_annotation_tasks_request_week"),
    Index("ix_annotation_tasks_queue", "status", "signature", "priority"),
)

annotations = Table(
    "annotations",
    metadata,
    Column("task_id", String(32), nullable=False),
    Column("annotator", String(NAME_LEN), nullable=False),
    Column("kind", String(16), nullable=False),  # accept | correct | reject | skip
    Column("values", Text, nullable=True),  # JSON: the output fields this annotator stands behind (accept, correct)
    Column("reason", Text, nullable=True),  # why (required for reject)
    Column("created_at", Float, nullable=False),
    PrimaryKeyConstraint("task_id", "annotator", name="pk_annotations"),
    Index("ix_annotations_annotator", "annotator"),
)

annotation_imports = Table(
    "annotation_imports",
    metadata,
    Column("task_id", String(32), primary_key=True),  # a done annotation task phase 2 has handled
    Column("signature", String(NAME_LEN), nullable=False),
    Column("week", String(16), nullable=False),  # the task's week
    Column("destination", String(16), nullable=False),  # golden | training | rejected | conflict
    Column("version", String(NAME_LEN), nullable=True),  # the golden or training version it went into
    Column("imported_week", String(16), nullable=False),  # the week whose phase 2 imported it
    Column("imported_at", Float, nullable=False),
    Index("ix_annotation_imports_imported_week", "imported_week", "signature"),
)

program_versions = Table(
    "program_versions",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("fingerprint", String(64), nullable=False),
    Column("metadata", Text, nullable=False),  # JSON: the version's metadata.json
    Column("state", Text, nullable=False),  # JSON: the version's program.json (DSPy state; demos are user text)
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),  # changed only by the right to deletion (demos removed)
    PrimaryKeyConstraint("signature", "version", name="pk_program_versions"),
)

telemetry_records = Table(
    "telemetry_records",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),  # write order
    Column("timestamp_ms", BigInteger, nullable=False),  # the record's time (retention ages by it)
    Column("host", String(NAME_LEN), nullable=False),  # which host wrote it
    Column("kind", String(32), nullable=False),  # interaction | feedback | shadow
    Column("signature", String(NAME_LEN), nullable=True),
    Column("request_id", String(REQUEST_ID_LEN), nullable=True),
    Column("user_pseudonym", String(PSEUDONYM_COLUMN_LEN), nullable=True),
    Column("line", Text, nullable=False),  # the record's JSON line, as a telemetry file would hold it
    Index("ix_telemetry_records_timestamp", "timestamp_ms"),
    Index("ix_telemetry_records_user", "user_pseudonym"),
    Index("ix_telemetry_records_request", "request_id"),
)
