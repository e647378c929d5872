"""Readiness of a serving process: warm up in the background, then say "ready" (and tell systemd).

Liveness and readiness are different questions. ``/health`` answers "is the process alive"
at once; ``/ready`` answers "can it serve a request at full speed": the model self-tested
and loaded, the production and candidate versions warmed (their prompt prefixes cached),
the state database reachable, the telemetry directory writable. A process whose model
cannot run stays alive and un-ready, and says why.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ratchet.errors import ModelNotAvailableError

__all__ = ["Readiness", "notify_systemd"]

log = logging.getLogger(__name__)


@dataclass
class Readiness:
    """Where warm-up stands: ``starting`` → ``model`` → ``programs`` → ``ready``, or ``failed`` with the reason."""

    phase: str = "starting"
    error: str | None = None
    message: str | None = None
    started_at: float = field(default_factory=time.monotonic)
    ready_after_s: float | None = None
    warmed: list[tuple[str, str, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def ready(self) -> bool:
        return self.phase == "ready"

    @property
    def failed(self) -> bool:
        return self.phase == "failed"

    def enter(self, phase: str) -> None:
        with self._lock:
            if not self.failed:
                self.phase = phase

    def succeed(self, warmed: list[tuple[str, str, str]]) -> None:
        with self._lock:
            self.warmed = warmed
            self.ready_after_s = round(time.monotonic() - self.started_at, 3)
            self.phase = "ready"

    def fail(self, error: str, message: str) -> None:
        with self._lock:
            self.phase, self.error, self.message = "failed", error, message

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"phase": self.phase}
        if self.ready:
            out["ready_after_s"] = self.ready_after_s
            out["warmed"] = [{"signature": s, "arm": a, "version": v} for s, a, v in self.warmed]
        if self.failed:
            out.update(error=self.error, message=self.message)
        return out

    def run(self, warm_up: Any) -> None:
        """Call ``warm_up(on_phase)`` and record how it ended (for a background thread: never raises)."""
        try:
            warmed = warm_up(self.enter)
        except ModelNotAvailableError as exc:
            log.error("not ready: %s", exc)
            self.fail("model_not_available", str(exc))
        except Exception as exc:
            log.exception("not ready: warm-up failed")
            self.fail("warm_up_failed", f"{type(exc).__name__}: {exc}")
        else:
            self.succeed(warmed)
            log.info("ready after %.1f s (%d program versions warmed)", self.ready_after_s or 0.0, len(warmed))
            notify_systemd("READY=1")


def notify_systemd(state: str) -> bool:
    """Send ``state`` to systemd when started by a ``Type=notify`` unit (``$NOTIFY_SOCKET``); else do nothing."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # an abstract socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
        return True
    except OSError as exc:
        log.warning("could not notify systemd (%s): %s", address, exc)
        return False
