"""Readiness of a serving process: warm up in the background, then say "ready" (and tell systemd).

Liveness and readiness are different questions. ``/health`` answers "is the process alive"
at once; ``/ready`` answers "can it serve a request at full speed": the model self-tested
and loaded, the production and candidate versions warmed (their prompt prefixes cached),
the state database reachable, the telemetry directory writable. A process whose model
cannot run stays alive and un-ready, and says why. Once warm, ``/ready`` adds the checks of what
it depends on (:func:`dependency_checks`) and shows the warm-up report without what only operators
should read (:func:`public_warm_up`).
"""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ratchet.config import mask_urls_in_text
from ratchet.errors import ModelNotAvailableError, VersionError
from ratchet.serve.http_errors import public_text

if TYPE_CHECKING:
    from ratchet.serve.runtime import Runtime

__all__ = ["Readiness", "dependency_checks", "notify_systemd", "public_warm_up", "versions_check", "writable"]

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


def public_warm_up(warm_up: dict[str, Any]) -> dict[str, Any]:
    """The warm-up report without file paths, nor the text of an unexpected exception (the log has both)."""
    if warm_up.get("error") == "warm_up_failed":
        warm_up["message"] = "warm-up failed; the server log has the details"
    elif warm_up.get("message"):  # model_not_available: Ratchet's own explanation of what to change
        warm_up["message"] = public_text(str(warm_up["message"]))
    return warm_up


def dependency_checks(rt: Runtime) -> dict[str, dict[str, Any]]:
    """``/ready``'s checks of a warm process, by name (each with ``ok``): the model loaded, the state database
    reachable, telemetry writable, the served versions loadable, the routing state readable."""
    checks: dict[str, dict[str, Any]] = {}
    checks["model"] = {"ok": rt.model_loaded, "model": rt.lms.model_id,
                       "detail": "loaded" if rt.model_loaded else "weights not loaded"}
    try:
        rt.db.ping()
        checks["state_db"] = {"ok": True, "dialect": rt.db.dialect}
    except Exception as exc:  # the kind of error only: its text may name hosts, users and paths (logged instead)
        log.warning("readiness: the state database is not reachable: %s", mask_urls_in_text(str(exc)))
        checks["state_db"] = {"ok": False, "detail": f"not reachable ({type(exc).__name__}; the server log has "
                                                     "the details)"}
    checks["telemetry"] = writable(rt.telemetry.directory)
    stats = rt.telemetry.stats()
    checks["telemetry"].update({"queue_depth": stats.get("queue_depth"), "dropped": stats.get("dropped")})
    checks["versions"] = versions_check(rt)
    follower = rt.follower
    checks["routing"] = {"ok": follower.last_error is None, "version": follower.current().version,
                         "file_repairs": follower.repairs}
    if follower.last_error is not None:  # its text is in the log (the follower logs each failed read)
        checks["routing"]["detail"] = "serving the last verified state: the routing state cannot be read now"
    return checks


def versions_check(rt: Runtime) -> dict[str, Any]:
    """Every program version that serves now can be loaded (a missing one answers 503 version_unavailable)."""
    state = rt.follower.current()
    missing = []
    for spec in rt.registry:
        for arm, version in rt.served.serving_now(spec.name, state):
            try:
                rt.served.get(spec, version, arm)
            except VersionError as exc:
                missing.append({"signature": spec.name, "arm": arm, "version": version,
                                "detail": public_text(str(exc))[:300]})
    return {"ok": not missing, "unavailable": missing} if missing else {"ok": True}


def writable(directory: Path) -> dict[str, Any]:
    """Whether a file can be created in ``directory`` (made if missing); the reason, never the path, when not."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".health-", delete=True):
            pass
        return {"ok": True}
    except OSError as exc:  # the path is in the log and in `ratchet doctor`, never in a public answer
        log.warning("telemetry directory %s is not writable: %s", directory, exc)
        return {"ok": False, "detail": exc.strerror or "not writable"}
