"""The loop harness's moving parts: the ``ratchet`` processes of a workspace, traffic and probe threads, and
read-only views of the state (used by :mod:`loop_harness`)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
BANKING = REPO / "src" / "ratchet" / "examples" / "data" / "banking77"
SIG = "classify_intent"
BAD_EXPERIMENT = "bad_demos"
TEXT = "I still haven't received my new card, when will it arrive?"


class ScenarioError(RuntimeError):
    """A step of the scenario did not happen in time (the message says which, with the logs' tails)."""


# -- processes ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _tail(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


class Processes:
    """The ``ratchet`` processes of one workspace, each in its own process group, all stopped at the end."""

    def __init__(self, workspace: Path, env: dict[str, str]) -> None:
        self.workspace = workspace
        self.env = env
        self.config = workspace / "ratchet.toml"
        self.started: list[subprocess.Popen[bytes]] = []
        self.logs = workspace / "logs-harness"
        self.logs.mkdir(exist_ok=True)

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "ratchet", "--config", str(self.config), *args]

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(self.argv(*args), cwd=self.workspace, env=self.env, stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.started.append(proc)
        return proc

    def run(self, name: str, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(self.argv(*args), cwd=self.workspace, env=self.env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        with (self.logs / f"{name}.log").open("a") as log:
            log.write(f"$ ratchet {' '.join(args)}\n{done.stdout}{done.stderr}\n")
        if done.returncode != 0:
            raise ScenarioError(f"ratchet {' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
        return done

    def stop_all(self) -> None:
        """SIGTERM the process group of each process we started and is not reaped yet (a controller's cycle
        children are in its group), then SIGKILL what is left of the group — while its leader is not reaped, so
        the group id cannot have been reused — and reap the leader."""
        live = [proc for proc in self.started if proc.returncode is None]
        for proc in live:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for proc in live:
            while time.monotonic() < deadline and not _exited(proc.pid):
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _exited(pid: int) -> bool:
    """Whether child ``pid`` has exited, without reaping it."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


class Traffic:
    """``ratchet loadtest`` rounds against the server, in a thread, until stopped; every finished round's report
    is kept (stopping ends the round under way)."""

    def __init__(self, procs: Processes, url: str, schedule: Any, phase: str, data: Path, seed: int, *,
                 finish_round: bool = False) -> None:
        """``schedule``: the harness's ``Schedule`` (round_queries, concurrency). ``finish_round``: stopping lets the
        round under way end (its report counts) instead of ending it."""
        self.procs, self.url, self.schedule, self.phase, self.data, self.seed = procs, url, schedule, phase, data, seed
        self.finish_round = finish_round
        self.reports: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._current: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"traffic-{phase}", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._stop.set()
            if self._current is not None and self._current.poll() is None and not self.finish_round:
                self._current.terminate()
        self._thread.join(timeout=120)

    def _run(self) -> None:
        round_ = 0
        while True:
            out = self.procs.logs / f"loadtest-{self.phase}-{round_}.json"
            with self._lock:
                if self._stop.is_set():
                    return
                self._current = self.procs.spawn(
                    f"loadtest-{self.phase}", "loadtest", "--target", self.url, "--signature", SIG,
                    "--data", str(self.data), "--queries", str(self.schedule.round_queries),
                    "--concurrency", str(self.schedule.concurrency), "--feedback-from-labels", "--corrections",
                    "--seed", str(self.seed * 1000 + round_), "--save", str(out))
            code = self._current.wait()
            if code == 0:
                with contextlib.suppress(OSError, ValueError):
                    self.reports.append(json.loads(out.read_text()))
            elif not self._stop.is_set():
                self.failures.append(f"round {round_} exited {code}")
                self._stop.wait(1.0)
            round_ += 1


class Prober:
    """One user request every ``every_s`` in a thread: which version and arm answered, and when it returned."""

    def __init__(self, url: str, every_s: float = 1.0) -> None:
        self.url, self.every_s = url, every_s
        self.answers: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def __enter__(self) -> Prober:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def _run(self) -> None:
        while not self._stop.is_set():
            sent = time.time()
            try:
                answer = _predict(self.url)
                self.answers.append({"sent": sent, "returned": time.time(), "version": answer.get("version"),
                                     "arm": answer.get("arm")})
            except (httpx.HTTPError, ValueError) as exc:
                self.answers.append({"sent": sent, "returned": time.time(), "error": str(exc)})
            self._stop.wait(self.every_s)


# -- reading the state ---------------------------------------------------------------------------

class State:
    """Read-only views of the workspace's state database and files."""

    def __init__(self, workspace: Path) -> None:
        from ratchet.config import load_settings
        from ratchet.rollout.experiments import ExperimentStore
        from ratchet.store.db import StateDB
        from ratchet.store.leases import LeaseStore

        self.settings = load_settings(workspace / "ratchet.toml")
        self.home = self.settings.home_dir
        self.db = StateDB.connect(self.settings)
        self.experiments = ExperimentStore(self.db)
        self.leases = LeaseStore(self.db)

    def experiment(self, experiment_id: str) -> Any:
        return self.experiments.get(experiment_id)

    def events(self, experiment_id: str) -> list[Any]:
        return self.experiments.events(experiment_id)

    def experiment_ids(self) -> list[str]:
        return [e.experiment_id for e in self.experiments.list(signature=SIG)]

    def runs(self) -> list[dict[str, Any]]:
        found = []
        for path in sorted((self.home / "runs").glob("run_*/orchestration_summary.json")):
            with contextlib.suppress(OSError, ValueError):
                found.append(json.loads(path.read_text()))
        return found

    def trigger_snapshot(self) -> dict[str, Any] | None:
        from ratchet.monitor.loop_state import read_trigger_snapshot

        return read_trigger_snapshot(self.home)

    def production(self) -> str:
        from ratchet.programs.production import ProductionPointers
        from ratchet.programs.versions import VersionStore

        return ProductionPointers(self.db, VersionStore(self.home)).get(SIG)

    def nth_feedback_at(self, n: int) -> float | None:
        """When the ``n``-th feedback on the signature's requests was recorded (the trigger's condition)."""
        from sqlalchemy import select

        from ratchet.store.tables import feedback, request_index

        query = (select(feedback.c.created_at)
                 .select_from(feedback.join(request_index, feedback.c.request_id == request_index.c.request_id))
                 .where(request_index.c.signature == SIG).order_by(feedback.c.created_at).offset(n - 1).limit(1))
        with self.db.begin() as conn:
            return conn.execute(query).scalar()

    def arm_requests(self, experiment_id: str) -> dict[str, int]:
        from ratchet.store.outcomes.stats import read_arm_stats

        exp = self.experiment(experiment_id)
        stats = read_arm_stats(self.db, SIG, since=exp.created_at, experiment_id=experiment_id)
        return {f"{version}/{arm}": s.requests for (version, arm), s in stats.items()}


def _epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


def _predict(url: str) -> dict[str, Any]:
    response = httpx.post(f"{url}/v1/programs/{SIG}/predict", json={"inputs": {"text": TEXT}}, timeout=60)
    response.raise_for_status()
    return response.json()


def _bad_candidate(state: State, production: str) -> str:
    """Production's own demos with each label moved to the next intent, saved as a new version."""
    import dspy

    from ratchet.examples.classify_intent import Intent
    from ratchet.programs import load_programs
    from ratchet.programs.versions import VersionStore

    # The bundled programs only: the workspace's ratchet_programs.py would stay registered in this process (a
    # pytest run) and clash with another workspace's copy of the same file.
    spec = load_programs(state.settings.model_copy(update={"programs": ["ratchet.examples"]})).get(SIG)
    store = VersionStore(state.home)
    meta = store.get(SIG, production)
    program = store.load(spec, production)
    labels = list(typing.get_args(Intent))
    for predictor in program.predictors():
        if not predictor.demos:
            raise ScenarioError(f"production {production} has no demos to corrupt")
        demos = [dict(demo) if isinstance(demo, dict) else demo.toDict() for demo in predictor.demos]
        predictor.demos = [dspy.Example(**{**demo, "intent": labels[(labels.index(demo["intent"]) + 1) % len(labels)]})
                           for demo in demos]
    return store.save(spec, program, lm=meta.lm, adapter=meta.adapter, parent=production,
                      notes="e2e: production's demos with every label moved to the next intent").version
