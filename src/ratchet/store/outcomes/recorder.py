"""The serving path's per-arm counter recorder: counts in memory, adds them to the database in the background.

Every served request adds to the counters of its (signature, version, arm, minute): requests,
errors by type, latency (sum, sum of squares and a histogram bucket), tokens and cost, and
remembers which arm served its request id. ``OutcomeRecorder.record`` and ``index_request`` only
update a dict under a lock; a background thread writes the pending batch every second
(``ratchet.store.outcomes._batch``) and keeps a failed batch for the next attempt. A batch being
written stays visible to ``find``/``lookup`` until its transaction ends, so feedback arriving
mid-flush still finds its arm.
"""

from __future__ import annotations

import atexit
import logging
import math
import threading
import time
from bisect import bisect_left
from dataclasses import dataclass

from sqlalchemy import Insert

from ratchet.store.db import StateDB
from ratchet.store.outcomes._batch import Batch, new_row, upsert_statements, write_batch
from ratchet.store.outcomes.histogram import LATENCY_BUCKET_BOUNDS_S
from ratchet.store.outcomes.request_index import IndexedRequest, find_request

__all__ = ["UNKNOWN_ERROR", "OutcomeRecorder", "RecorderStats"]

log = logging.getLogger(__name__)

UNKNOWN_ERROR = "unknown"
"""Error type counted for a failed request recorded without one."""

_INF = math.inf
_WARN_EVERY_S = 60.0


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
        self._pending = Batch()
        self._in_flight = Batch()  # the batch being written: still visible to lookup() until committed
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
        experiment_id: str = "",
    ) -> None:
        """Count one request (served within ``experiment_id``, if any). A negative, NaN or infinite latency or
        cost counts as 0."""
        minute = int((time.time() if at is None else at) // 60)
        if not 0.0 <= latency_s < _INF:
            latency_s = 0.0
        if not 0.0 <= cost_usd < _INF:
            cost_usd = 0.0
        key = (signature, version, arm, experiment_id, minute)
        bucket_key = (*key, bisect_left(LATENCY_BUCKET_BOUNDS_S, latency_s))
        error_key = None if success else (*key, error_type or UNKNOWN_ERROR)
        with self._lock:
            pending = self._pending
            row = pending.outcomes.get(key)
            if row is None:
                row = pending.outcomes[key] = new_row()
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

    def compare(self, signature: str, version: str, experiment_id: str, *, agreed: bool,
                at: float | None = None) -> None:
        """Count one shadow call of candidate ``version`` whose answer was compared with production's."""
        key = (signature, version, experiment_id, int((time.time() if at is None else at) // 60))
        with self._lock:
            counts = self._pending.agreement.setdefault(key, [0, 0])
            counts[0] += 1
            counts[1] += int(agreed)

    def index_request(self, request_id: str, signature: str, version: str, arm: str, at: float | None = None, *,
                      user: str | None = None) -> None:
        """Remember which arm served ``request_id`` (for feedback that arrives later), and for which user (a keyed
        pseudonym, :mod:`ratchet.store.pseudonyms`; None without a user id). The first entry wins."""
        created = time.time() if at is None else at
        with self._lock:
            index = self._pending.index
            if request_id in index:
                return
            if len(index) >= self._max_requests:
                self._index_dropped += 1
                full = True
            else:
                index[request_id] = (signature, version, arm, created, user)
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
                batch, self._pending = self._pending, Batch()
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
                    self._in_flight = Batch()
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

    def _write(self, batch: Batch) -> int:
        return write_batch(self._db, batch, self._upserts())

    def _upserts(self) -> dict[str, Insert]:
        if self._statements is None:
            self._statements = upsert_statements(self._db.dialect)
        return self._statements

    def _restore(self, batch: Batch) -> None:
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
            for key, (compared, agreed) in batch.agreement.items():
                counts = pending.agreement.setdefault(key, [0, 0])
                counts[0] += compared
                counts[1] += agreed
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


def _describe(exc: BaseException) -> str:
    """One line naming the database's error, without SQLAlchemy's echo of the statement and parameters."""
    cause = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {lines[0] if lines else ''}"
