"""One phase in a child process: a timeout, progress on a queue, and its output in the run's logs.

A hung optimizer or a crash in user code (or in llama.cpp) ends only that child; the parent gets
``{"status": "ok" | "failed" | "timeout", "seconds", "result" | "error"[, "traceback"]}``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue as queue_module
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ratchet.audit import set_audit_defaults
from ratchet.errors import RatchetError
from ratchet.loop.phases import PHASE_FUNCTIONS, PhaseFailed, settings_from_payload
from ratchet.store.private import make_private_dir, private_opener

__all__ = ["run_phase"]


def _child(name: str, payload: dict[str, Any], results: Any, dspy_log_level: int) -> None:
    logging.getLogger("dspy").setLevel(dspy_log_level)  # the parent's choice (``ratchet -v`` logs DSPy's INFO)
    # Optimizers print and draw tqdm bars; the console shows one Rich progress bar, the run keeps the rest in logs/.
    _redirect_output(Path(payload["run_dir"]) / "logs" / f"{payload['signature']}.{name}.log")

    def progress(done: int, total: int | None, status: str) -> None:
        results.put(("progress", done, total, status))

    set_audit_defaults(actor=f"cycle:{payload['run_id']}", source="cycle")  # e.g. the dataset version it writes
    try:
        from ratchet.lm.setup import configure_dspy

        # DSPy's cache under the home directory, the configured LM/adapter; the embedded model self-tested first,
        # so a llama.cpp crash fails the phase with its reason instead of killing it silently.
        configure_dspy(settings_from_payload(payload)).prepare()
        results.put(("ok", PHASE_FUNCTIONS[name](payload, progress)))
    except PhaseFailed as exc:
        results.put(("failed", str(exc), None))
    except RatchetError as exc:
        results.put(("failed", f"{type(exc).__name__}: {exc}", None))
    except BaseException as exc:  # a bug or a crash in user code: keep the traceback for the summary
        results.put(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)))


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (file descriptors included) to ``path``."""
    make_private_dir(path.parent)
    log = open(path, "ab", buffering=0, opener=private_opener)  # noqa: SIM115 - lives as long as the process
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        if stream is not None:
            stream.flush()
        os.dup2(log.fileno(), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def run_phase(name: str, payload: dict[str, Any], timeout: float,
              on_progress: Callable[[int, int | None, str], None] | None = None) -> dict[str, Any]:
    """Run one phase in a child process; returns ``{"status", "seconds", "result" | "error"}``."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    dspy_log_level = logging.getLogger("dspy").getEffectiveLevel()
    process = ctx.Process(target=_child, args=(name, payload, results, dspy_log_level), daemon=True)
    started = time.perf_counter()
    process.start()
    outcome: dict[str, Any] | None = None
    while outcome is None:
        remaining = timeout - (time.perf_counter() - started)
        if remaining <= 0:
            process.kill()
            outcome = {"status": "timeout", "error": f"{name} timed out after {timeout:g} s"}
            break
        try:
            message = results.get(timeout=min(remaining, 0.5))
        except queue_module.Empty:
            if not process.is_alive() and results.empty():
                outcome = {"status": "failed", "error": f"{name} process died (exit code {process.exitcode})"}
            continue
        if message[0] == "progress":
            if on_progress is not None:
                on_progress(*message[1:])
        elif message[0] == "ok":
            outcome = {"status": "ok", "result": message[1]}
        else:
            outcome = {"status": "failed", "error": message[1]}
            if message[2]:
                outcome["traceback"] = message[2]
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
    outcome["seconds"] = round(time.perf_counter() - started, 2)
    return outcome
