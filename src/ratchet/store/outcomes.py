"""Per-arm outcome counters: what each program version did, minute by minute.

Every served request adds to the counters of its (signature, version, arm): requests,
errors by type, latency (sum, sum of squares and a log-spaced histogram), tokens and
cost. Quality comes from feedback scores (``ratchet.store.feedback``), matched to the
arm that served the request through the request index when the stats are read, so
feedback may reach any process, before or after the request's own counters are flushed.
``OutcomeRecorder.record`` only updates a dict under a lock;
a background thread adds the totals to the state database every second with
UPSERT increments, so any number of processes and hosts can count into the same rows
and the sums stay exact. A rollout controller reads them back with
``read_arm_stats``: means and standard deviations from the sums, p50/p95/p99 from
the merged histograms.

Rows are per epoch minute (``int(t // 60)``): time windows have one-minute resolution.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Insert, Table, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from ratchet.store.db import StateDB
from ratchet.store.tables import (
    ARM_LEN,
    ERROR_TYPE_LEN,
    NAME_LEN,
    REQUEST_ID_LEN,
    arm_errors,
    arm_latency_buckets,
    arm_outcomes,
    feedback,
    request_index,
)

__all__ = [
    "LATENCY_BUCKET_BOUNDS_S",
    "ArmStats",
    "IndexedRequest",
    "OutcomeRecorder",
    "RecorderStats",
    "find_request",
    "latency_quantile",
    "lookup_request",
    "prune_outcomes",
    "prune_request_index",
    "read_arm_stats",
    "read_totals",
]

log = logging.getLogger(__name__)

LATENCY_BUCKET_BOUNDS_S: tuple[float, ...] = tuple(10.0 ** (i / 10 - 3) for i in range(59))
"""Upper bounds of the latency histogram: 10 per decade from 1 ms to 631 s (10^-3 … 10^2.8).

Bucket ``i`` counts latencies in ``(bound[i-1], bound[i]]`` (bucket 0 from 0 s, bucket
59 everything above 631 s). Stored rows hold the bucket index: never change these bounds.
"""

UNKNOWN_ERROR = "unknown"
"""Error type counted for a failed request recorded without one."""

_OVERFLOW_BUCKET = len(LATENCY_BUCKET_BOUNDS_S)
_INF = math.inf
_WARN_EVERY_S = 60.0
# Positions in a pending arm_outcomes row (a list, updated in place under the lock).
_COUNTERS = ("requests", "errors", "latency_sum_s", "latency_sumsq", "tokens_in", "tokens_out", "cost_usd")
_INT_COUNTERS = frozenset({"requests", "errors", "tokens_in", "tokens_out"})

ArmKey = tuple[str, str, str, int]  # signature, version, arm, minute


def _new_row() -> list[Any]:
    return [0, 0, 0.0, 0.0, 0, 0, 0.0]


class IndexedRequest(NamedTuple):
    """Which (signature, version, arm) served a request, and when (epoch seconds)."""

    signature: str
    version: str
    arm: str
    served_at: float


@dataclass(frozen=True)
class RecorderStats:
    """What a recorder has done since it started."""

    recorded: int  # record() calls
    indexed: int  # index_request() calls accepted
    index_dropped: int  # request-index entries dropped because too many were pending
    flushes: int  # successful flushes that wrote something
    flushed_rows: int  # rows written (inserted or incremented), all tables
    flush_errors: int  # failed flushes (their increments were kept for the next one)
    pending: int  # keys waiting for the next flush
    last_error: str | None


@dataclass
class _Batch:
    outcomes: dict[ArmKey, list[Any]] = field(default_factory=dict)
    errors: dict[tuple[str, str, str, int, str], int] = field(default_factory=dict)
    buckets: dict[tuple[str, str, str, int, int], int] = field(default_factory=dict)
    index: dict[str, tuple[str, str, str, float]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.outcomes) + len(self.errors) + len(self.buckets) + len(self.index)


class OutcomeRecorder:
    """Aggregates per-arm outcomes in memory and adds them to the state database in the background.

    ``record``/``index_request`` are thread-safe and do no I/O. A
    daemon thread flushes every ``flush_interval_s`` (sooner once ``max_pending_keys``
    keys are pending), all keys in one transaction. A failed flush keeps its increments
    for the next attempt: counts are never lost while the process lives (``close`` at
    shutdown; it is also registered with ``atexit``). Request-index entries are the one
    exception: past ``max_pending_requests`` unflushed ids, new ones are dropped and counted.
    """

    def __init__(
        self,
        db: StateDB,
        *,
        flush_interval_s: float = 1.0,
        max_pending_keys: int = 10_000,
        max_pending_requests: int = 100_000,
    ) -> None:
        if flush_interval_s <= 0:
            raise ValueError(f"flush_interval_s must be positive, got {flush_interval_s}")
        self._db = db
        self._interval = flush_interval_s
        self._max_keys = max_pending_keys
        self._max_requests = max_pending_requests
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending = _Batch()
        self._in_flight = _Batch()  # the batch being written: still visible to lookup() until committed
        self._recorded = self._indexed = self._index_dropped = 0
        self._flushes = self._flushed_rows = self._flush_errors = 0
        self._last_error: str | None = None
        self._last_warning = -_INF
        self._statements: dict[str, Insert] | None = None
        self._closed = False
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ratchet-outcomes-flush", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- the caller's side: no I/O ---------------------------------------------------------------

    def record(
        self,
        signature: str,
        version: str,
        arm: str,
        *,
        latency_s: float,
        success: bool,
        error_type: str | None = None,
        tokens_in: int = 0,
        tokens_out: int = 0,
        cost_usd: float = 0.0,
        at: float | None = None,
    ) -> None:
        """Count one request. A negative, NaN or infinite latency or cost counts as 0."""
        minute = int((time.time() if at is None else at) // 60)
        if not 0.0 <= latency_s < _INF:
            latency_s = 0.0
        if not 0.0 <= cost_usd < _INF:
            cost_usd = 0.0
        key = (signature, version, arm, minute)
        bucket_key = (signature, version, arm, minute, bisect_left(LATENCY_BUCKET_BOUNDS_S, latency_s))
        error_key = None if success else (signature, version, arm, minute, error_type or UNKNOWN_ERROR)
        with self._lock:
            pending = self._pending
            row = pending.outcomes.get(key)
            if row is None:
                row = pending.outcomes[key] = _new_row()
            row[0] += 1
            row[2] += latency_s
            row[3] += latency_s * latency_s
            row[4] += tokens_in
            row[5] += tokens_out
            row[6] += cost_usd
            buckets = pending.buckets
            buckets[bucket_key] = buckets.get(bucket_key, 0) + 1
            if error_key is not None:
                row[1] += 1
                pending.errors[error_key] = pending.errors.get(error_key, 0) + 1
            self._recorded += 1
            full = len(pending.outcomes) + len(buckets) + len(pending.errors) >= self._max_keys
        if full and not self._wake.is_set():
            self._wake.set()

    def index_request(self, request_id: str, signature: str, version: str, arm: str, at: float | None = None) -> None:
        """Remember which arm served ``request_id`` (for feedback that arrives later). The first entry wins."""
        created = time.time() if at is None else at
        with self._lock:
            index = self._pending.index
            if request_id in index:
                return
            if len(index) >= self._max_requests:
                self._index_dropped += 1
                full = True
            else:
                index[request_id] = (signature, version, arm, created)
                self._indexed += 1
                full = len(index) >= self._max_keys
        if full and not self._wake.is_set():
            self._wake.set()

    def find(self, request_id: str) -> IndexedRequest | None:
        """``find_request`` that also sees entries not flushed yet."""
        with self._lock:
            entry = self._pending.index.get(request_id) or self._in_flight.index.get(request_id)
        return IndexedRequest(*entry) if entry is not None else find_request(self._db, request_id)

    def lookup(self, request_id: str) -> tuple[str, str, str] | None:
        """``lookup_request`` that also sees entries not flushed yet."""
        found = self.find(request_id)
        return found[:3] if found is not None else None

    # -- flushing ----------------------------------------------------------------------------------

    def flush(self) -> bool:
        """Write everything pending now, in one transaction. False if it failed (the increments are kept)."""
        with self._flush_lock:
            with self._lock:
                batch, self._pending = self._pending, _Batch()
                self._in_flight = batch
            if not len(batch):
                return True
            try:
                rows = self._write(batch)
            except Exception as exc:
                self._restore(batch)
                self._failed(exc)
                return False
            finally:
                with self._lock:
                    self._in_flight = _Batch()
            with self._lock:
                self._flushes += 1
                self._flushed_rows += rows
            return True

    def close(self) -> None:
        """Stop the background thread and flush what is pending. Idempotent."""
        if self._closed:
            return
        self._closed = True
        atexit.unregister(self.close)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        if not self.flush():
            log.error("outcome counters: final flush failed, %d pending keys lost (%s)",
                      self.stats().pending, self._last_error)

    def stats(self) -> RecorderStats:
        with self._lock:
            return RecorderStats(
                recorded=self._recorded,
                indexed=self._indexed,
                index_dropped=self._index_dropped,
                flushes=self._flushes,
                flushed_rows=self._flushed_rows,
                flush_errors=self._flush_errors,
                pending=len(self._pending),
                last_error=self._last_error,
            )

    def __enter__(self) -> OutcomeRecorder:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            if self._stop.is_set():
                return  # close() does the last flush
            try:
                ok = self.flush()
            except Exception:  # never let the flusher die
                log.exception("outcome counters: unexpected error in the flush thread")
                ok = False
            if not ok:  # back off a full interval, even if record() keeps waking us
                self._stop.wait(self._interval)

    def _write(self, batch: _Batch) -> int:
        outcomes: dict[ArmKey, dict[str, Any]] = {}
        for (sig, ver, arm, minute), values in batch.outcomes.items():
            key = (_clean(sig, NAME_LEN), _clean(ver, NAME_LEN), _clean(arm, ARM_LEN), minute)
            row = outcomes.get(key)
            if row is None:
                outcomes[key] = dict(zip(("signature", "version", "arm", "minute"), key, strict=True),
                                     **dict(zip(_COUNTERS, values, strict=True)))
            else:  # two raw keys that only differed past the column length
                for name, value in zip(_COUNTERS, values, strict=True):
                    row[name] += value
        errors = _merge_counts(batch.errors, ("error_type", ERROR_TYPE_LEN))
        buckets = _merge_counts(batch.buckets, ("bucket", None))
        index = {}
        for request_id, (sig, ver, arm, created) in batch.index.items():
            rid = _clean(request_id, REQUEST_ID_LEN)
            index.setdefault(rid, {"request_id": rid, "signature": _clean(sig, NAME_LEN),
                                   "version": _clean(ver, NAME_LEN), "arm": _clean(arm, ARM_LEN),
                                   "created_at": float(created)})
        statements = self._upserts()
        # Sorted keys: concurrent flushers lock rows in the same order, so they never deadlock.
        work = [
            (statements["outcomes"], [outcomes[k] for k in sorted(outcomes)]),
            (statements["errors"], [errors[k] for k in sorted(errors)]),
            (statements["buckets"], [buckets[k] for k in sorted(buckets)]),
            (statements["index"], [index[k] for k in sorted(index)]),
        ]
        written = 0
        with self._db.begin(write=True) as conn:
            for statement, rows in work:
                if rows:
                    conn.execute(statement, rows)
                    written += len(rows)
        return written

    def _upserts(self) -> dict[str, Insert]:
        if self._statements is None:
            insert = postgresql.insert if self._db.dialect == "postgresql" else sqlite.insert
            self._statements = {
                "outcomes": _increment(insert, arm_outcomes, _COUNTERS),
                "errors": _increment(insert, arm_errors, ("count",)),
                "buckets": _increment(insert, arm_latency_buckets, ("count",)),
                "index": insert(request_index).on_conflict_do_nothing(index_elements=[request_index.c.request_id]),
            }
        return self._statements

    def _restore(self, batch: _Batch) -> None:
        """Put a failed batch back under whatever was recorded meanwhile."""
        with self._lock:
            pending = self._pending
            for key, values in batch.outcomes.items():
                row = pending.outcomes.get(key)
                if row is None:
                    pending.outcomes[key] = values
                else:
                    for i, value in enumerate(values):
                        row[i] += value
            for target, counts in ((pending.errors, batch.errors), (pending.buckets, batch.buckets)):
                for key, count in counts.items():
                    target[key] = target.get(key, 0) + count
            pending.index.update(batch.index)  # the batch holds the earlier entries: first wins

    def _failed(self, exc: Exception) -> None:
        message = _describe(exc)
        now = time.monotonic()
        with self._lock:
            self._flush_errors += 1
            self._last_error = message
            pending = len(self._pending)
            warn = now - self._last_warning >= _WARN_EVERY_S
            if warn:
                self._last_warning = now
        if warn:
            log.warning("outcome counters: flush to %s failed, %d keys kept for retry: %s", self._db.url, pending,
                        message)


# -- reading -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArmStats:
    """Totals of one arm over a time window, and what follows from them.

    Means and (sample) standard deviations come from exact sums; percentiles are
    estimated from the latency histogram, interpolated geometrically within a bucket
    (at most one bucket, ~26 %, off; usually far less). With no requests, the latency
    figures and rates are 0; with no feedback scores, ``quality_mean``/``quality_std`` are None.
    Quality counts feedback on the window's requests (by request time), whenever it arrived.
    """

    requests: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    latency_mean_s: float = 0.0
    latency_std_s: float = 0.0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_p99_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    quality_count: int = 0
    quality_mean: float | None = None
    quality_std: float | None = None
    latency_buckets: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def success_rate(self) -> float:
        return 1.0 - self.error_rate if self.requests else 0.0


def latency_quantile(buckets: Mapping[int, int], q: float) -> float:
    """The ``q`` quantile (0–1) of a latency histogram keyed by bucket index; 0.0 when it is empty."""
    total = sum(buckets.values())
    if total <= 0:
        return 0.0
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    last = 0
    for bucket in sorted(buckets):
        count = buckets[bucket]
        if count <= 0:
            continue
        last = bucket
        if seen + count >= rank:
            return _within(bucket, (rank - seen) / count)
        seen += count
    return _within(last, 1.0)


def _within(bucket: int, fraction: float) -> float:
    if bucket <= 0:
        return LATENCY_BUCKET_BOUNDS_S[0] * fraction
    if bucket >= _OVERFLOW_BUCKET:
        return LATENCY_BUCKET_BOUNDS_S[-1]
    low, high = LATENCY_BUCKET_BOUNDS_S[bucket - 1], LATENCY_BUCKET_BOUNDS_S[bucket]
    return low * (high / low) ** fraction


def read_arm_stats(
    db: StateDB,
    signature: str,
    *,
    since: float | None = None,
    until: float | None = None,
    versions: Iterable[str] | None = None,
) -> dict[tuple[str, str], ArmStats]:
    """Each (version, arm) of ``signature`` over ``[since, until)`` (epoch seconds, widened to whole minutes)."""
    totals = _read(db, signature=signature, since=since, until=until, versions=versions)
    return {(version, arm): stats for (_sig, version, arm), stats in totals.items()}


def read_totals(
    db: StateDB, signature: str | None = None, since: float | None = None
) -> dict[tuple[str, str, str], ArmStats]:
    """Every (signature, version, arm), or those of one signature, since ``since`` (for dashboards)."""
    return _read(db, signature=signature, since=since, until=None, versions=None)


def find_request(db: StateDB, request_id: str) -> IndexedRequest | None:
    """What served ``request_id`` and when, if it was indexed and not pruned."""
    ri = request_index.c
    query = select(ri.signature, ri.version, ri.arm, ri.created_at).where(
        ri.request_id == _clean(request_id, REQUEST_ID_LEN)
    )
    with db.begin() as conn:
        row = conn.execute(query).first()
    return IndexedRequest(row[0], row[1], row[2], float(row[3])) if row is not None else None


def lookup_request(db: StateDB, request_id: str) -> tuple[str, str, str] | None:
    """The (signature, version, arm) that served ``request_id``, if it was indexed and not pruned."""
    found = find_request(db, request_id)
    return found[:3] if found is not None else None


def prune_request_index(db: StateDB, older_than: float) -> int:
    """Delete request-index entries created before ``older_than`` (epoch seconds); returns how many."""
    with db.begin(write=True) as conn:
        return conn.execute(delete(request_index).where(request_index.c.created_at < older_than)).rowcount


def prune_outcomes(db: StateDB, older_than: float) -> int:
    """Delete counter rows of minutes that ended before ``older_than``; returns how many rows."""
    cutoff = math.floor(older_than / 60)
    deleted = 0
    with db.begin(write=True) as conn:
        for table in (arm_outcomes, arm_errors, arm_latency_buckets):
            deleted += conn.execute(delete(table).where(table.c.minute < cutoff)).rowcount
    return deleted


class _Sums:
    __slots__ = ("buckets", "counters", "errors", "quality")

    def __init__(self) -> None:
        self.counters: dict[str, float] = dict.fromkeys(_COUNTERS, 0)
        self.errors: dict[str, int] = {}
        self.buckets: dict[int, int] = {}
        self.quality: tuple[int, float, float] = (0, 0.0, 0.0)  # count, sum, sum of squares

    def stats(self) -> ArmStats:
        c = self.counters
        requests = int(c["requests"])
        quality_count, quality_sum, quality_sumsq = self.quality
        latency_mean, latency_std = _mean_std(requests, c["latency_sum_s"], c["latency_sumsq"])
        quality_mean, quality_std = _mean_std(quality_count, quality_sum, quality_sumsq)
        return ArmStats(
            requests=requests,
            errors=int(c["errors"]),
            errors_by_type=dict(sorted(self.errors.items(), key=lambda item: (-item[1], item[0]))),
            error_rate=c["errors"] / requests if requests else 0.0,
            latency_mean_s=latency_mean or 0.0,
            latency_std_s=latency_std or 0.0,
            latency_p50_s=latency_quantile(self.buckets, 0.50),
            latency_p95_s=latency_quantile(self.buckets, 0.95),
            latency_p99_s=latency_quantile(self.buckets, 0.99),
            tokens_in=int(c["tokens_in"]),
            tokens_out=int(c["tokens_out"]),
            cost_usd=float(c["cost_usd"]),
            quality_count=quality_count,
            quality_mean=quality_mean,
            quality_std=quality_std,
            latency_buckets=dict(sorted(self.buckets.items())),
        )


def _mean_std(n: int, total: float, total_sq: float) -> tuple[float | None, float | None]:
    if n <= 0:
        return None, None
    mean = total / n
    variance = (total_sq - total * total / n) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(max(variance, 0.0))


def _read(
    db: StateDB,
    *,
    signature: str | None,
    since: float | None,
    until: float | None,
    versions: Iterable[str] | None,
) -> dict[tuple[str, str, str], ArmStats]:
    version_list = None if versions is None else [str(v) for v in versions]
    sums: dict[tuple[str, str, str], _Sums] = {}

    def where(table: Table) -> list[ColumnElement[bool]]:
        conditions = []
        if signature is not None:
            conditions.append(table.c.signature == signature)
        if version_list is not None:
            conditions.append(table.c.version.in_(version_list))
        if since is not None:
            conditions.append(table.c.minute >= math.floor(since / 60))
        if until is not None:
            conditions.append(table.c.minute < math.ceil(until / 60))
        return conditions

    def grouped(table: Table, extra: list[Any], values: list[Any]) -> Any:
        keys = [table.c.signature, table.c.version, table.c.arm, *extra]
        return select(*keys, *values).where(*where(table)).group_by(*keys)

    o = arm_outcomes.c
    with db.begin(snapshot=True) as conn:
        for row in conn.execute(grouped(arm_outcomes, [], [func.sum(o[name]) for name in _COUNTERS])):
            counters = sums.setdefault((row[0], row[1], row[2]), _Sums()).counters
            for name, value in zip(_COUNTERS, row[3:], strict=True):
                counters[name] = (int if name in _INT_COUNTERS else float)(value or 0)
        errors = grouped(arm_errors, [arm_errors.c.error_type], [func.sum(arm_errors.c.count)])
        for sig, version, arm, error_type, count in conn.execute(errors):
            sums.setdefault((sig, version, arm), _Sums()).errors[error_type] = int(count)
        buckets = grouped(arm_latency_buckets, [arm_latency_buckets.c.bucket], [func.sum(arm_latency_buckets.c.count)])
        for sig, version, arm, bucket, count in conn.execute(buckets):
            sums.setdefault((sig, version, arm), _Sums()).buckets[int(bucket)] = int(count)
        for sig, version, arm, n, total, total_sq in conn.execute(
                _quality_query(signature, since, until, version_list)):
            sums.setdefault((sig, version, arm), _Sums()).quality = (int(n), float(total or 0), float(total_sq or 0))
    return {key: value.stats() for key, value in sorted(sums.items())}


def _quality_query(signature: str | None, since: float | None, until: float | None,
                   versions: list[str] | None) -> Any:
    """Feedback scores per (signature, version, arm), joined to the arm that served each request."""
    ri, fb = request_index.c, feedback.c
    keys = [ri.signature, ri.version, ri.arm]
    conditions = []
    if signature is not None:
        conditions.append(ri.signature == signature)
    if versions is not None:
        conditions.append(ri.version.in_(versions))
    if since is not None:
        conditions.append(ri.created_at >= since)
    if until is not None:
        conditions.append(ri.created_at < until)
    joined = feedback.join(request_index, fb.request_id == ri.request_id)
    return (select(*keys, func.count(fb.score), func.sum(fb.score), func.sum(fb.score * fb.score))
            .select_from(joined).where(*conditions).group_by(*keys))


# -- helpers -------------------------------------------------------------------------------------------


def _clean(value: Any, limit: int) -> str:
    """A string the database accepts: ``str()``, no NUL characters, at most ``limit`` characters."""
    text = value if type(value) is str else str(value)
    if "\x00" in text:
        text = text.replace("\x00", "")
    return text[:limit]


def _merge_counts(counts: Mapping[tuple, int], last: tuple[str, int | None]) -> dict[tuple, dict[str, Any]]:
    """Rows (dicts) for a per-arm, per-minute count table whose key ends with ``last`` = (column, text limit)."""
    column, limit = last
    rows: dict[tuple, dict[str, Any]] = {}
    for (sig, ver, arm, minute, extra), count in counts.items():
        tail = _clean(extra, limit) if limit is not None else int(extra)
        key = (_clean(sig, NAME_LEN), _clean(ver, NAME_LEN), _clean(arm, ARM_LEN), minute, tail)
        row = rows.get(key)
        if row is None:
            rows[key] = {"signature": key[0], "version": key[1], "arm": key[2], "minute": minute, column: tail,
                         "count": count}
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


def _describe(exc: BaseException) -> str:
    """One line naming the database's error, without SQLAlchemy's echo of the statement and parameters."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"
