"""The cap on program calls running at once in a serving process (``serve.max_concurrent_calls``).

A call takes a slot before the program runs and gives it back when it ends. When every slot is
taken, callers wait in line (first come, first served) for at most ``wait_s``; one still waiting
then is refused with :class:`~ratchet.errors.OverloadedError` instead of queueing until its
timeout. The gate serves event-loop callers (:meth:`CallGate.aslot`) and threads
(:meth:`CallGate.slot`) alike: a freed slot is handed straight to the first in line, on its own
loop or thread. ``retry_after_s`` (in the error) is the mean duration of recent calls: about when
a slot frees up.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

from ratchet.config import Settings
from ratchet.errors import OverloadedError

__all__ = ["CallGate", "call_limit"]

_EMBEDDED_SLOTS_PER_CONTEXT = 4  # one computing, three ready: the engine is never idle, nobody waits long
_REMOTE_SLOTS = 64


def call_limit(settings: Settings, embedded: bool) -> int:
    """``serve.max_concurrent_calls``, or its automatic value when 0 (see the setting's description)."""
    configured = settings.serve.max_concurrent_calls
    if configured:
        return configured
    return _EMBEDDED_SLOTS_PER_CONTEXT * settings.lm.local.pool_size if embedded else _REMOTE_SLOTS


class _Waiter:
    """One caller in line; ``granted`` is set (under the gate's lock) when a slot is handed to it."""

    __slots__ = ("granted", "wake")

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.granted = False


class CallGate:
    """At most ``limit`` calls at once; a caller waits at most ``wait_s`` for a slot (see the module doc)."""

    def __init__(self, limit: int, wait_s: float) -> None:
        if limit < 1:
            raise ValueError(f"the call limit must be at least 1, got {limit}")
        self.limit = limit
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self._active = 0
        self._line: deque[_Waiter] = deque()
        self._mean_s = 0.0  # exponentially weighted mean call duration

    @property
    def active(self) -> int:
        """Slots taken now."""
        return self._active

    @property
    def waiting(self) -> int:
        """Callers in line now."""
        return len(self._line)

    @asynccontextmanager
    async def aslot(self) -> AsyncIterator[None]:
        """Hold a slot for the body (event-loop callers); raises :class:`OverloadedError` when none frees in time."""
        loop = asyncio.get_running_loop()
        woken: asyncio.Future[None] = loop.create_future()
        waiter = self._enter(lambda: loop.call_soon_threadsafe(_resolve, woken))
        if waiter is not None:
            try:
                await asyncio.wait({woken}, timeout=self.wait_s)
            except BaseException:  # cancelled (the client went away): give back a slot handed over meanwhile
                self._abandon(waiter)
                raise
            self._settle(waiter)
        with self._held():
            yield

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the body (threads); raises :class:`OverloadedError` when none frees in time."""
        event = threading.Event()
        waiter = self._enter(event.set)
        if waiter is not None:
            event.wait(self.wait_s)
            self._settle(waiter)
        with self._held():
            yield

    @contextmanager
    def _held(self) -> Iterator[None]:
        """The body runs holding a slot taken already; the slot is given back (and the call timed) after it."""
        started = time.perf_counter()
        try:
            yield
        finally:
            self._leave(time.perf_counter() - started)

    def run_if_free(self, work: Callable[..., object], *args: object) -> bool:
        """Run ``work(*args)`` holding a slot if one is free now and nobody is in line; False (not run) otherwise.

        For work that may be skipped, such as shadow calls: requests always come first.
        """
        with self._lock:
            if self._active >= self.limit or self._line:
                return False
            self._active += 1
        with self._held():
            work(*args)
        return True

    def retry_after_s(self) -> int:
        """Whole seconds a refused caller should wait: the mean call duration, at least 1."""
        return max(1, math.ceil(self._mean_s))

    # -- the line -----------------------------------------------------------------------------
    def _enter(self, wake: Callable[[], None]) -> _Waiter | None:
        """Take a free slot (None) or join the line (the waiter); refuse at once when there is no wait."""
        with self._lock:
            if self._active < self.limit and not self._line:
                self._active += 1
                return None
            if self.wait_s <= 0:
                raise self._overloaded()
            waiter = _Waiter(wake)
            self._line.append(waiter)
            return waiter

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter that stops waiting for another reason than the time: out of the line, or its slot given back."""
        with self._lock:
            if not waiter.granted:
                self._line.remove(waiter)
                return
        self._leave(0.0)

    def _settle(self, waiter: _Waiter) -> None:
        """After waiting: keep the slot handed over meanwhile, or leave the line and refuse."""
        with self._lock:
            if waiter.granted:
                return
            self._line.remove(waiter)
            raise self._overloaded()

    def _leave(self, duration_s: float) -> None:
        with self._lock:
            if duration_s > 0:
                self._mean_s = duration_s if self._mean_s == 0 else 0.9 * self._mean_s + 0.1 * duration_s
            while self._line:
                waiter = self._line.popleft()
                waiter.granted = True  # the slot passes to it: _active stays as it is
                try:
                    waiter.wake()
                except RuntimeError:  # its event loop is closed: nobody waits there any more
                    waiter.granted = False
                    continue
                return
            self._active -= 1

    def _overloaded(self) -> OverloadedError:
        return OverloadedError(f"the server is busy: all {self.limit} call slots stayed taken for {self.wait_s:g} s",
                               retry_after_s=self.retry_after_s())


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
