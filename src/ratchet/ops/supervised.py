"""A long-running child process kept running: started with the scheduler, restarted when it exits, stopped with it.

``ratchet schedule run`` uses it for ``ratchet controller run``: one command on a host starts both the
cron jobs and the controller, and a controller that crashes is back after a short backoff (doubling
up to a minute). Each start and exit is reported to ``on_event`` (the schedule log); the child's own
output is appended to its log file.
"""

from __future__ import annotations

import contextlib
import logging
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ratchet.store.private import make_private_dir, private_opener

__all__ = ["SupervisedProcess"]

log = logging.getLogger(__name__)


class SupervisedProcess:
    """Keep ``argv`` running until :meth:`stop`."""

    def __init__(self, name: str, argv: Sequence[str], log_path: Path, *,
                 on_event: Callable[[dict[str, Any]], None] | None = None, min_backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, stop_grace_s: float = 30.0) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self.on_event = on_event or (lambda event: None)
        self.min_backoff_s = min_backoff_s
        self.max_backoff_s = max_backoff_s
        self.stop_grace_s = stop_grace_s
        self.starts = 0
        self._child: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None and child.poll() is None else None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"ratchet-supervise-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """SIGTERM the child (SIGKILL after ``stop_grace_s``) and stop restarting it. Idempotent."""
        self._stop.set()
        with self._lock:
            child = self._child
        if child is not None and child.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
            try:
                child.wait(self.stop_grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = self.min_backoff_s
        while not self._stop.is_set():
            make_private_dir(self.log_path.parent)
            started = time.monotonic()
            with self._lock:
                if self._stop.is_set():
                    return
                try:
                    with open(self.log_path, "ab", opener=private_opener) as out:
                        self._child = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=out,
                                                       stderr=subprocess.STDOUT)
                except OSError as exc:
                    self.on_event({"event": "error", "process": self.name, "reason": f"could not start: {exc}"})
                    self._child = None
            child = self._child
            if child is not None:
                self.starts += 1
                self.on_event({"event": "start", "process": self.name, "pid": child.pid, "argv": self.argv})
                code = child.wait()
                if self._stop.is_set():
                    self.on_event({"event": "end", "process": self.name, "exit_code": code, "reason": "stopped"})
                    return
                self.on_event({"event": "end", "process": self.name, "exit_code": code,
                               "reason": f"exited; restarting in {backoff:g} s"})
                log.error("schedule: %s exited with code %s; restarting in %g s", self.name, code, backoff)
            if time.monotonic() - started > 10 * self.max_backoff_s:
                backoff = self.min_backoff_s  # it ran for a good while: the next failure starts small again
            if self._stop.wait(backoff):
                return
            backoff = min(self.max_backoff_s, backoff * 2)
