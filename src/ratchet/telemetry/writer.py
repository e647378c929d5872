"""The buffered telemetry writer: ``submit`` never blocks a request; a thread appends batches to disk.

Records wait on a bounded in-memory queue until a writer thread appends them in batches to the
active file (:mod:`ratchet.telemetry.logfiles`: names, order, line format, the cross-process
lock) and rotates it past its size limit; a maintenance thread gzips rotated files and deletes
old ones (:mod:`ratchet.telemetry.rotation`). A failed write (disk full, permission denied) is
retried with backoff (:attr:`TelemetryWriter.retry_delays_s`); then the batch is dropped and
counted. Errors never reach the caller; a warning is logged at most once a minute.

With a ``sink`` (:class:`ratchet.telemetry.database.DatabaseSink`: several hosts on one PostgreSQL) each
batch is inserted into the state database instead, with the same retries and counters, and retention
deletes the sink's old rows; the directory is still created (readiness checks it) but stays empty.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.store.private import make_private_dir
from ratchet.telemetry.logfiles import (
    _ROTATED,  # noqa: F401 - tests match rotated names with writer._ROTATED
    ACTIVE_NAME,
    LOCK_NAME,
    append,
    iter_log_files,
    serialize,
)
from ratchet.telemetry.rotation import compress_pending, delete_expired, rotate

if TYPE_CHECKING:
    from ratchet.telemetry.database import DatabaseSink

__all__ = ["ACTIVE_NAME", "LOCK_NAME", "TelemetryWriter", "iter_log_files"]

logger = logging.getLogger(__name__)

_WARN_EVERY_S = 60.0
_MAINTENANCE_EVERY_S = 3600.0
_EXIT_TIMEOUT_S = 10.0  # at interpreter exit; an unfinished compression is redone at the next start


class TelemetryWriter:
    """Append submitted records to ``<directory>/interactions.jsonl`` from a background thread.

    ``submit`` puts a record on a bounded in-memory queue and returns at once; when the
    queue is full the record is dropped and counted. The thread writes a batch when
    ``batch_size`` records are waiting or the oldest has waited ``flush_interval_s``.
    The active file is rotated past ``max_file_mb``, rotated files are gzipped
    (``compress_rotated``) and deleted after ``max_age_days`` by a second thread.
    Records are flushed at interpreter exit. Do not mutate a dict after submitting it:
    it is serialized later, on the writer thread.
    """

    retry_delays_s: tuple[float, ...] = (0.1, 0.5)
    """Pauses between attempts at writing a batch; after the last, the batch is dropped."""

    def __init__(self, directory: Path, *, max_file_mb: float = 100, max_age_days: float = 90,
                 compress_rotated: bool = True, queue_size: int = 10_000, flush_interval_s: float = 0.5,
                 batch_size: int = 512, sink: DatabaseSink | None = None) -> None:
        if max_file_mb <= 0 or max_age_days <= 0 or queue_size < 1 or flush_interval_s <= 0 or batch_size < 1:
            raise ValueError("max_file_mb, max_age_days, flush_interval_s must be > 0; queue_size, batch_size >= 1")
        self.directory = Path(directory)
        self.active_path = self.directory / ACTIVE_NAME
        self.lock_path = self.directory / LOCK_NAME
        self.max_bytes = int(max_file_mb * 1024 * 1024)
        self.max_age_s = max_age_days * 86400.0
        self.compress_rotated = compress_rotated
        self.queue_size = queue_size
        self.flush_interval_s = flush_interval_s
        self.batch_size = batch_size
        self.sink = sink
        try:
            make_private_dir(self.directory)
        except OSError as exc:  # telemetry never stops the caller: writes will fail and be counted
            logger.warning("telemetry directory %s is not usable: %s", self.directory, exc)
        self._start()
        atexit.register(self.close, timeout=_EXIT_TIMEOUT_S)
        _WRITERS.add(self)

    # -- state (also rebuilt in a forked child) ------------------------------------------

    def _start(self) -> None:
        self._cond = threading.Condition()
        self._pending: collections.deque[Any] = collections.deque()
        self._accepted = 0  # records that went on the queue
        self._processed = 0  # of those, written or dropped by the writer thread
        self._flushing = 0  # flush() calls waiting: write without waiting for a full batch
        self._torn = False  # a failed write left a partial line at the end of the active file
        self._closed = False
        self._stopping = False
        self._counts = dict.fromkeys(
            ("submitted", "written", "dropped_queue_full", "dropped_closed", "dropped_write_error",
             "dropped_invalid", "write_errors", "rotations", "compressed", "deleted", "maintenance_errors"), 0)
        self._last_warning = -_WARN_EVERY_S
        self._suppressed_warnings = 0
        self._maintenance_wanted = threading.Event()
        self._maintenance_wanted.set()  # once at start: leftovers of earlier runs, retention
        self._thread = threading.Thread(target=self._run, name="ratchet-telemetry-writer", daemon=True)
        self._maintenance = threading.Thread(target=self._run_maintenance, name="ratchet-telemetry-maintenance",
                                             daemon=True)
        self._thread.start()
        self._maintenance.start()

    def _after_fork_in_child(self) -> None:
        # The parent's threads do not exist here and its pending records are the parent's to write.
        if not self._closed:
            self._start()

    # -- public API ----------------------------------------------------------------------

    def submit(self, record: dict[str, Any]) -> bool:
        """Queue a record for writing; False (and counted) when the queue is full or the writer closed. Never raises."""
        try:
            with self._cond:
                self._counts["submitted"] += 1
                if self._closed:
                    self._counts["dropped_closed"] += 1
                    return False
                pending = self._pending
                if len(pending) >= self.queue_size:
                    self._counts["dropped_queue_full"] += 1
                    return False
                pending.append(record)
                self._accepted += 1
                if len(pending) == 1 or len(pending) >= self.batch_size:
                    self._cond.notify_all()
            return True
        except Exception:  # pragma: no cover - defensive: telemetry must never break a request
            return False

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until every record submitted so far is written (or dropped); False on timeout."""
        with self._cond:
            target = self._accepted
            if self._processed >= target:
                return True
            if not self._thread.is_alive():
                return False
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._processed >= target, timeout)
            finally:
                self._flushing -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Flush, stop the threads and finish pending compression; later submits are dropped. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
        atexit.unregister(self.close)
        deadline = time.monotonic() + timeout
        self.flush(timeout=max(0.0, deadline - time.monotonic()))
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self._thread.join(max(0.0, deadline - time.monotonic()))
        self._maintenance_wanted.set()
        self._maintenance.join(max(0.0, deadline - time.monotonic()))

    def stats(self) -> dict[str, int]:
        """Counters: submitted = written + dropped + queue_depth (once flushed) and the maintenance work done."""
        with self._cond:
            counts = dict(self._counts)
            queue_depth = len(self._pending)
        dropped = (counts["dropped_queue_full"] + counts["dropped_closed"] + counts["dropped_write_error"]
                   + counts["dropped_invalid"])
        return {"submitted": counts.pop("submitted"), "written": counts.pop("written"), "dropped": dropped,
                "write_errors": counts.pop("write_errors"), "rotations": counts.pop("rotations"),
                "compressed": counts.pop("compressed"), "deleted": counts.pop("deleted"),
                "queue_depth": queue_depth, **counts}

    def apply_retention(self, now: float | None = None) -> list[Path]:
        """Delete rotated files (plain, ``.gz``) last modified over ``max_age_days`` ago; never the active file."""
        now = time.time() if now is None else now
        if self.sink is not None:
            self._count("deleted", self.sink.delete_expired(self.max_age_s, now))
            return []
        return delete_expired(self.directory, self.max_age_s, now, self._count, self._warn)

    def __enter__(self) -> TelemetryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the writer thread ---------------------------------------------------------------

    def _next_batch(self) -> list[Any] | None:
        """Wait for a full batch, the oldest record's deadline or a flush; None when stopping with nothing left."""
        with self._cond:
            while not self._pending:
                if self._stopping:
                    return None
                self._cond.wait()
            deadline = time.monotonic() + self.flush_interval_s
            while len(self._pending) < self.batch_size and not self._flushing and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            pending = self._pending
            return [pending.popleft() for _ in range(min(self.batch_size, len(pending)))]

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            try:
                self._write_batch(batch)
            except Exception as exc:  # a bug must not kill the thread and strand flush()
                self._count("dropped_write_error", len(batch))
                self._warn(f"telemetry writer failed unexpectedly: {exc!r}")
            with self._cond:
                self._processed += len(batch)
                self._cond.notify_all()

    def _write_batch(self, batch: list[Any]) -> None:
        lines, kept = [], []
        for record in batch:
            try:
                lines.append(serialize(record))
                kept.append(record)
            except (TypeError, ValueError) as exc:
                self._count("dropped_invalid")
                self._warn(f"telemetry record dropped, not serializable: {exc}")
        if not lines:
            return
        if self.sink is not None:
            self._write_to_sink(lines, kept)
            return
        payload, records = b"".join(lines), len(lines)
        delays = (*self.retry_delays_s, None)
        for delay in delays:
            prefix = b"\n" if self._torn else b""
            written, size, error = append(self.directory, prefix + payload)
            if error is None:
                self._count("written", records)
                if size > self.max_bytes:
                    self._rotate()
                return
            self._count("write_errors")
            # After a short write (disk full) only whole records count as written; the next attempt
            # ends the torn line and rewrites that record whole: readers skip the fragment as one
            # malformed line, and nothing is duplicated.
            if written >= len(prefix):  # the torn line, if any, is now ended
                head = payload[:written - len(prefix)]
                self._torn = bool(head) and not head.endswith(b"\n")
                done = head.count(b"\n")
                payload = payload[head.rfind(b"\n") + 1:]
                records -= done
                if done:
                    self._count("written", done)
            if delay is None:
                self._count("dropped_write_error", records)
                self._warn(f"telemetry: {records} records dropped after {len(delays)} failed writes "
                           f"to {self.active_path}: {error}")
                return
            self._warn(f"telemetry write to {self.active_path} failed, retrying: {error}")
            time.sleep(delay)

    def _write_to_sink(self, lines: list[bytes], records: list[dict[str, Any]]) -> None:
        assert self.sink is not None
        for delay in (*self.retry_delays_s, None):
            try:
                self.sink.write(lines, records)
            except Exception as exc:  # the database is unreachable: retried, then the batch is dropped
                self._count("write_errors")
                if delay is None:
                    self._count("dropped_write_error", len(lines))
                    self._warn(f"telemetry batch of {len(lines)} records dropped: the state database refused it "
                               f"({type(exc).__name__}: {exc})")
                    return
                time.sleep(delay)
            else:
                self._count("written", len(lines))
                return

    def _rotate(self) -> None:
        if rotate(self.directory, self.max_bytes, self._count, self._warn):
            self._maintenance_wanted.set()

    # -- the maintenance thread: compression and retention -------------------------------

    def _run_maintenance(self) -> None:
        while True:
            self._maintenance_wanted.wait(_MAINTENANCE_EVERY_S)
            self._maintenance_wanted.clear()
            stopping = self._stopping or not self._thread.is_alive()
            try:
                self.apply_retention()  # first: never compress what is about to be deleted
                if self.compress_rotated and self.sink is None:
                    compress_pending(self.directory, self._count, self._warn)
            except Exception as exc:
                self._count("maintenance_errors")
                self._warn(f"telemetry maintenance failed: {exc!r}")
            if stopping:
                return

    # -- bookkeeping ---------------------------------------------------------------------

    def _count(self, key: str, n: int = 1) -> None:
        with self._cond:
            self._counts[key] += n

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        with self._cond:
            if now - self._last_warning < _WARN_EVERY_S:
                self._suppressed_warnings += 1
                return
            suppressed, self._suppressed_warnings = self._suppressed_warnings, 0
            self._last_warning = now
        suffix = f" ({suppressed} similar warnings suppressed)" if suppressed else ""
        logger.warning("%s%s", message, suffix)

    def __repr__(self) -> str:
        return f"TelemetryWriter({str(self.directory)!r})"


_WRITERS: weakref.WeakSet[TelemetryWriter] = weakref.WeakSet()


def _reset_writers_in_child() -> None:
    for writer in list(_WRITERS):
        writer._after_fork_in_child()


os.register_at_fork(after_in_child=_reset_writers_in_child)
