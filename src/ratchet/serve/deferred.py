"""Run small jobs a little later on one background thread (e.g. matching feedback to a request
that another worker served and has not flushed to the database yet)."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Deferred"]

log = logging.getLogger(__name__)


class Deferred:
    """Call ``handler(item)`` about ``delay_s`` after :meth:`schedule`; ``close`` runs what is left now."""

    def __init__(self, handler: Callable[[Any], None], *, delay_s: float, max_pending: int = 100_000) -> None:
        self._handler = handler
        self._delay = delay_s
        self._max = max_pending
        self._heap: list[tuple[float, int, Any]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="ratchet-deferred", daemon=True)
        self._thread.start()

    def schedule(self, item: Any) -> bool:
        with self._cond:
            if self._closed or len(self._heap) >= self._max:
                self.dropped += 1
                return False
            heapq.heappush(self._heap, (time.monotonic() + self._delay, next(self._counter), item))
            self._cond.notify()
        return True

    def close(self) -> None:
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify()
        self._thread.join()
        for _, _, item in sorted(self._heap):
            self._call(item)
        self._heap.clear()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                if self._closed:
                    return
                _, _, item = heapq.heappop(self._heap)
            self._call(item)

    def _call(self, item: Any) -> None:
        try:
            self._handler(item)
        except Exception:
            log.exception("deferred job failed")
