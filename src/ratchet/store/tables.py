"""The state database's tables as SQLAlchemy Core objects: what queries are written against.

This module describes the *current* schema. It never creates anything: tables come
into being only through the numbered migrations in ``ratchet.store.migrations``, which
keep their own frozen copy of the DDL they ran. When a migration changes a table,
change its definition here in the same commit; a test checks that a migrated database
and this module agree.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, MetaData, PrimaryKeyConstraint, String, Table, Text

__all__ = [
    "ARM_LEN",
    "ERROR_TYPE_LEN",
    "NAME_LEN",
    "REQUEST_ID_LEN",
    "arm_errors",
    "arm_latency_buckets",
    "arm_outcomes",
    "feedback",
    "metadata",
    "request_index",
    "schema_migrations",
]

NAME_LEN = 200
"""Longest signature name or program version stored; longer values are truncated on write."""
ARM_LEN = 64
ERROR_TYPE_LEN = 200
REQUEST_ID_LEN = 200

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
    Column("minute", BigInteger, nullable=False),  # epoch minute of the request: int(t // 60)
    Column("requests", BigInteger, nullable=False, default=0),
    Column("errors", BigInteger, nullable=False, default=0),
    Column("latency_sum_s", Float, nullable=False, default=0.0),
    Column("latency_sumsq", Float, nullable=False, default=0.0),
    Column("tokens_in", BigInteger, nullable=False, default=0),
    Column("tokens_out", BigInteger, nullable=False, default=0),
    Column("cost_usd", Float, nullable=False, default=0.0),
    PrimaryKeyConstraint("signature", "version", "arm", "minute", name="pk_arm_outcomes"),
)

arm_errors = Table(
    "arm_errors",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("minute", BigInteger, nullable=False),
    Column("error_type", String(ERROR_TYPE_LEN), nullable=False),
    Column("count", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("signature", "version", "arm", "minute", "error_type", name="pk_arm_errors"),
)

arm_latency_buckets = Table(
    "arm_latency_buckets",
    metadata,
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("minute", BigInteger, nullable=False),
    Column("bucket", Integer, nullable=False),  # index into outcomes.LATENCY_BUCKET_BOUNDS_S
    Column("count", BigInteger, nullable=False, default=0),
    PrimaryKeyConstraint("signature", "version", "arm", "minute", "bucket", name="pk_arm_latency_buckets"),
)

request_index = Table(
    "request_index",
    metadata,
    Column("request_id", String(REQUEST_ID_LEN), primary_key=True),
    Column("signature", String(NAME_LEN), nullable=False),
    Column("version", String(NAME_LEN), nullable=False),
    Column("arm", String(ARM_LEN), nullable=False),
    Column("created_at", Float, nullable=False),  # epoch seconds
    Index("ix_request_index_created_at", "created_at"),
)

feedback = Table(
    "feedback",
    metadata,
    Column("request_id", String(REQUEST_ID_LEN), primary_key=True),  # the latest score for a request wins
    Column("score", Float, nullable=False),  # 0..1
    Column("correction", Text, nullable=True),  # JSON object of corrected output fields
    Column("created_at", Float, nullable=False),  # epoch seconds
    Index("ix_feedback_created_at", "created_at"),
)
