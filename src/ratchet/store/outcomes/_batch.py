"""A batch of pending counter increments, and how one batch is added to the state database.

The recorder accumulates increments in a ``Batch`` (keys as recorded, values as running sums) and
hands a whole batch to ``write_batch``: keys are cleaned to what the columns accept (two raw keys
that only differed past a column's length merge into one row), rows are sorted so concurrent
flushers lock them in the same order, and everything goes in one transaction of UPSERT
increments (request-index entries: insert, first wins), so any number of processes and hosts can
count into the same rows and the sums stay exact.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Insert, Table
from sqlalchemy.dialects import postgresql, sqlite

from ratchet.store.db import StateDB
from ratchet.store.outcomes._columns import COUNTERS, clean
from ratchet.store.tables import (
    ARM_LEN,
    ERROR_TYPE_LEN,
    NAME_LEN,
    PSEUDONYM_COLUMN_LEN,
    REQUEST_ID_LEN,
    arm_errors,
    arm_latency_buckets,
    arm_outcomes,
    request_index,
    shadow_agreement,
)

__all__ = ["AgreementKey", "ArmKey", "Batch", "new_row", "upsert_statements", "write_batch"]

ArmKey = tuple[str, str, str, str, int]  # signature, version, arm, experiment id ("" outside one), minute
AgreementKey = tuple[str, str, str, int]  # signature, candidate version, experiment id, minute


def new_row() -> list[Any]:
    """A pending ``arm_outcomes`` row, all counters zero, in ``COUNTERS`` order."""
    return [0, 0, 0.0, 0.0, 0, 0, 0.0]


@dataclass
class Batch:
    """Increments not written yet: counter rows, error and latency-bucket counts, request-index entries."""

    outcomes: dict[ArmKey, list[Any]] = field(default_factory=dict)
    errors: dict[tuple[str, str, str, str, int, str], int] = field(default_factory=dict)
    buckets: dict[tuple[str, str, str, str, int, int], int] = field(default_factory=dict)
    index: dict[str, tuple[str, str, str, float, str | None]] = field(default_factory=dict)  # …, user pseudonym
    agreement: dict[AgreementKey, list[int]] = field(default_factory=dict)  # [compared, agreed]

    def __len__(self) -> int:
        return len(self.outcomes) + len(self.errors) + len(self.buckets) + len(self.index) + len(self.agreement)


def upsert_statements(dialect: str) -> dict[str, Insert]:
    """The statements of a flush for ``dialect``: UPSERT increments per counter table, first-wins index inserts."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return {
        "outcomes": _increment(insert, arm_outcomes, COUNTERS),
        "errors": _increment(insert, arm_errors, ("count",)),
        "buckets": _increment(insert, arm_latency_buckets, ("count",)),
        "index": insert(request_index).on_conflict_do_nothing(index_elements=[request_index.c.request_id]),
        "agreement": _increment(insert, shadow_agreement, ("compared", "agreed")),
    }


def write_batch(db: StateDB, batch: Batch, statements: Mapping[str, Insert]) -> int:
    """Add ``batch`` in one transaction with ``statements`` (``upsert_statements``); returns the rows written."""
    outcomes: dict[ArmKey, dict[str, Any]] = {}
    for (sig, ver, arm, experiment, minute), values in batch.outcomes.items():
        key = (clean(sig, NAME_LEN), clean(ver, NAME_LEN), clean(arm, ARM_LEN), clean(experiment, NAME_LEN), minute)
        row = outcomes.get(key)
        if row is None:
            outcomes[key] = dict(zip(("signature", "version", "arm", "experiment_id", "minute"), key, strict=True),
                                 **dict(zip(COUNTERS, values, strict=True)))
        else:  # two raw keys that only differed past the column length
            for name, value in zip(COUNTERS, values, strict=True):
                row[name] += value
    errors = _merge_counts(batch.errors, ("error_type", ERROR_TYPE_LEN))
    buckets = _merge_counts(batch.buckets, ("bucket", None))
    index = {}
    for request_id, (sig, ver, arm, created, user) in batch.index.items():
        rid = clean(request_id, REQUEST_ID_LEN)
        index.setdefault(rid, {"request_id": rid, "signature": clean(sig, NAME_LEN),
                               "version": clean(ver, NAME_LEN), "arm": clean(arm, ARM_LEN),
                               "created_at": float(created),
                               "user_pseudonym": None if user is None else clean(user, PSEUDONYM_COLUMN_LEN)})
    agreement: dict[AgreementKey, dict[str, Any]] = {}
    for (sig, ver, experiment, minute), (compared, agreed) in batch.agreement.items():
        key = (clean(sig, NAME_LEN), clean(ver, NAME_LEN), clean(experiment, NAME_LEN), minute)
        row = agreement.setdefault(key, {"signature": key[0], "version": key[1], "experiment_id": key[2],
                                         "minute": minute, "compared": 0, "agreed": 0})
        row["compared"] += compared
        row["agreed"] += agreed
    # Sorted keys: concurrent flushers lock rows in the same order, so they never deadlock.
    work = [
        (statements["outcomes"], [outcomes[k] for k in sorted(outcomes)]),
        (statements["errors"], [errors[k] for k in sorted(errors)]),
        (statements["buckets"], [buckets[k] for k in sorted(buckets)]),
        (statements["index"], [index[k] for k in sorted(index)]),
        (statements["agreement"], [agreement[k] for k in sorted(agreement)]),
    ]
    written = 0
    with db.begin(write=True) as conn:
        for statement, rows in work:
            if rows:
                conn.execute(statement, rows)
                written += len(rows)
    return written


def _merge_counts(counts: Mapping[tuple, int], last: tuple[str, int | None]) -> dict[tuple, dict[str, Any]]:
    """Rows (dicts) for a per-arm, per-minute count table whose key ends with ``last`` = (column, text limit)."""
    column, limit = last
    rows: dict[tuple, dict[str, Any]] = {}
    for (sig, ver, arm, experiment, minute, extra), count in counts.items():
        tail = clean(extra, limit) if limit is not None else int(extra)
        key = (clean(sig, NAME_LEN), clean(ver, NAME_LEN), clean(arm, ARM_LEN), clean(experiment, NAME_LEN), minute,
               tail)
        row = rows.get(key)
        if row is None:
            rows[key] = {"signature": key[0], "version": key[1], "arm": key[2], "experiment_id": key[3],
                         "minute": minute, column: tail, "count": count}
        else:
            row["count"] += count
    return rows


def _increment(insert: Any, table: Table, counters: Iterable[str]) -> Insert:
    """``INSERT … ON CONFLICT (primary key) DO UPDATE SET c = table.c + excluded.c`` for each counter."""
    statement = insert(table)
    return statement.on_conflict_do_update(
        index_elements=list(table.primary_key.columns),
        set_={name: table.c[name] + statement.excluded[name] for name in counters},
    )
