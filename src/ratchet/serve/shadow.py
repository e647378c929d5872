"""Shadow calls: a candidate in shadow also answers production's requests, off the request path, unseen.

After a request is answered, the runtime offers it to a :class:`ShadowRunner` when the routing state
chose it for shadow (:func:`ratchet.routing.shadows`). The runner admits at most
``max_per_minute`` calls per process (a token bucket: shadow calls cost LM calls) into a bounded
queue, and one background thread runs them, so a slow or failing candidate never delays a user.
What was skipped is counted by reason (``ratchet_shadow_skipped_total``). The runtime's job
(:meth:`ratchet.serve.runtime.Runtime`) runs the candidate, counts the call as arm ``shadow`` in the
per-arm counters and whether its answer agrees with production's (:func:`outputs_agree`).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ratchet.hashing import canonical_json
from ratchet.programs import ProgramSpec
from ratchet.serve import metrics

__all__ = ["ShadowJob", "ShadowRunner", "outputs_agree"]

log = logging.getLogger(__name__)

_QUEUE_SIZE = 64


@dataclass(frozen=True)
class ShadowJob:
    """One request to run again on the candidate: its inputs, and what production answered (None: it failed)."""

    spec: ProgramSpec
    version: str
    experiment_id: str
    request_id: str
    values: dict[str, Any]
    answered: dict[str, Any] | None
    user: str | None = None  # the keyed pseudonym of the request's user, carried to the shadow call's telemetry


def _normal(value: Any) -> str:
    if isinstance(value, str):
        return " ".join(value.split()).casefold()
    try:
        return canonical_json(value)
    except (TypeError, ValueError):
        return repr(value)


def outputs_agree(production: Mapping[str, Any], candidate: Mapping[str, Any]) -> bool:
    """Whether two answers are the same: every output field equal, ignoring case and runs of whitespace."""
    return production.keys() == candidate.keys() and all(
        _normal(production[name]) == _normal(candidate[name]) for name in production)


class _TokenBucket:
    """``rate_per_minute`` admissions a minute, in bursts of at most a tenth of it (at least 1)."""

    def __init__(self, rate_per_minute: int) -> None:
        self.rate_s = rate_per_minute / 60.0
        self.capacity = max(1.0, rate_per_minute / 10.0)
        self.tokens = self.capacity
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate_s)
            self.at = now
            if self.tokens < 1.0:
                return False
            self.tokens -= 1.0
            return True


class ShadowRunner:
    """Runs shadow jobs on one background thread, capped per minute, from a bounded queue."""

    def __init__(self, run: Callable[[ShadowJob], None], *, max_per_minute: int, queue_size: int = _QUEUE_SIZE
                 ) -> None:
        self._run_job = run
        self._bucket = _TokenBucket(max_per_minute)
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=queue_size)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False

    def offer(self, job: ShadowJob) -> bool:
        """Queue ``job`` unless the cap or the queue refuses it (counted); never blocks."""
        if self._closed:
            return False
        if not self._bucket.take():
            metrics.SHADOW_SKIPPED.labels(job.spec.name, "rate_limit").inc()
            return False
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            metrics.SHADOW_SKIPPED.labels(job.spec.name, "queue_full").inc()
            return False
        self._start()
        return True

    def join(self, timeout: float = 30.0) -> bool:
        """Wait until every queued job ran (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while self._queue.unfinished_tasks:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued jobs within ``timeout``, then stop; what is left is dropped (promised to nobody)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        self.join(timeout)
        while True:  # make room for the stop sign
            try:
                self._queue.put_nowait(None)
                break
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self._queue.task_done()
                except queue.Empty:
                    pass
        thread.join(timeout)

    def _start(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._loop, name="ratchet-shadow", daemon=True)
                self._thread.start()

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            try:
                if job is None:
                    return
                self._run_job(job)
            except Exception:  # a shadow call must never take the runner down
                log.exception("shadow call of %s %s failed unexpectedly", job.spec.name if job else "?",
                              job.version if job else "?")
            finally:
                self._queue.task_done()
