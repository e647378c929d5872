"""``ratchet controller``: one process that watches every live experiment, so rollouts finish by themselves.

Every ``rollout.check_interval_s`` the supervisor renews the ``controller`` lease in the state
database (only its holder acts: a second controller on any host waits as a standby and takes over
within ``rollout.lease_ttl_s`` of the first one's death) and, while it holds it, checks each live
experiment of every signature. Checks are isolated: an exception is logged, counted
(``ratchet_controller_errors_total``) and, after ``ALERT_AFTER`` failures in a row, alerted —
it never stops the other experiments or the loop. The lease row's heartbeat makes a dead
controller visible (``ratchet status``, ``ratchet monitor check-controller``, and the
``RatchetControllerDown`` alert rule over the metrics this process writes to
``<home>/metrics/ratchet_controller.prom``).

Every ``loop.trigger_check_interval_s`` the acting controller also evaluates the live triggers
(:mod:`ratchet.loop.triggers`) and starts a cycle for each signature whose trigger fires — in a
child process, under the scheduler's cycle lock (never beside the monthly run), with the reason
passed to the run's summary. The last evaluation is in ``<home>/metrics/triggers.json``
(``ratchet status`` shows it).

Each tick it also starts the canary pass when one is due (:mod:`ratchet.monitor.canary`, in its
own thread): production and every live candidate scored on their fixed probes, which the
rollout's canary trigger and the degradation trigger read.

All state lives in the database: a controller killed at any point and started again continues
from there (a decision is applied with compare-and-set, so nothing happens twice).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from ratchet.config import Settings
from ratchet.lm.setup import LMBundle
from ratchet.loop.rollouts import rollout_controller
from ratchet.loop.triggers import TriggerVerdict, evaluate_triggers
from ratchet.monitor.alerts import Alert
from ratchet.monitor.canary import run_canaries
from ratchet.monitor.dispatch import AlertDispatcher
from ratchet.monitor.loop_state import write_trigger_snapshot
from ratchet.monitor.results import CheckResult
from ratchet.ops.scheduler import Scheduler, ratchet_argv
from ratchet.programs import ProgramRegistry
from ratchet.rollout import Decision, RolloutController
from ratchet.rollout.controller import default_actor
from ratchet.rollout.experiments import LIVE
from ratchet.store.atomic import atomic_write_bytes
from ratchet.store.leases import CONTROLLER_LEASE, LeaseStore
from ratchet.store.private import SHARED_FILE

__all__ = ["ALERT_AFTER", "FAMILIES", "METRICS_TEXTFILE", "Supervisor", "Tick", "render_metrics"]

log = logging.getLogger(__name__)

METRICS_TEXTFILE = "ratchet_controller.prom"
ALERT_AFTER = 3
"""Consecutive failed checks of one experiment before an alert."""


@dataclass
class Tick:
    """What one pass did."""

    leader: bool
    decisions: dict[str, Decision] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    triggers: dict[str, TriggerVerdict] = field(default_factory=dict)  # when they were evaluated this pass

    def to_dict(self) -> dict[str, Any]:
        return {"leader": self.leader, "decisions": {k: d.to_dict() for k, d in self.decisions.items()},
                "errors": self.errors, "triggers": {k: v.to_dict() for k, v in self.triggers.items()}}


class Supervisor:
    """Checks every live experiment, on one process at a time, until stopped."""

    def __init__(self, settings: Settings, registry: ProgramRegistry, *, owner: str | None = None,
                 interval_s: float | None = None, controller: RolloutController | None = None,
                 cycle_command: Callable[[str, str], list[str]] | None = None, lms: LMBundle | None = None) -> None:
        """``cycle_command(signature, reason)`` replaces the ``ratchet cycle`` a trigger starts, ``lms`` the models
        the canaries run on (default: the configured ones, built when a pass is due)."""
        self.settings = settings
        self.controller = controller or rollout_controller(settings, registry)
        self.leases = LeaseStore(self.controller.db)
        self.owner = owner or default_actor("controller")
        self.interval_s = interval_s if interval_s is not None else settings.rollout.check_interval_s
        self.ttl_s = max(settings.rollout.lease_ttl_s, 3 * self.interval_s)
        self.started_at = time.time()
        self.checks = 0
        self.errors: Tally[str] = Tally()  # by kind: experiment | tick
        self.failures: Tally[str] = Tally()  # consecutive failures per experiment
        self.leader = False
        self.last_tick: float | None = None
        self.last_trigger_check = 0.0
        self.cycles: dict[str, threading.Thread] = {}  # signature → the thread waiting on its triggered cycle
        self.canary_thread: threading.Thread | None = None
        self.lms = lms
        self.registry = registry
        self.cycle_command = cycle_command or self._cycle_argv

    def tick(self) -> Tick:
        """Renew the lease and, when it is ours, check every live experiment once (never raises)."""
        was_leader = self.leader
        try:
            self.leader = self.leases.acquire(CONTROLLER_LEASE, self.owner, self.ttl_s, info=self._info())
        except Exception as exc:  # the database is down: nothing can be decided, try again next tick
            self.leader = False
            self.errors["tick"] += 1
            log.error("controller: cannot reach the state database: %s", exc)
            return Tick(leader=False, errors={"": f"{type(exc).__name__}: {exc}"})
        if self.leader != was_leader:
            log.info("controller %s: %s", self.owner, "acting (holds the lease)" if self.leader else
                     "standing by (another controller holds the lease)")
        result = Tick(leader=self.leader)
        if self.leader:
            try:
                live = self.controller.store.list(statuses=LIVE)
            except Exception as exc:
                self.errors["tick"] += 1
                result.errors[""] = f"{type(exc).__name__}: {exc}"
                live = []
            for experiment in live:
                self._check(experiment.experiment_id, result)
            if time.time() - self.last_trigger_check >= self.settings.loop.trigger_check_interval_s:
                self._triggers(result)
            self._canaries()
        self.last_tick = time.time()
        if self.leader or was_leader:  # the acting controller's heartbeat; a standby writes nothing
            self._write_metrics()
        return result

    def run(self, stop: threading.Event | None = None) -> None:
        """Tick every ``interval_s`` until ``stop`` is set; give the lease up on the way out."""
        stop = stop or threading.Event()
        log.info("controller %s: checking live experiments every %g s", self.owner, self.interval_s)
        try:
            while True:
                self.tick()
                if stop.wait(self.interval_s):
                    return
        finally:
            try:
                self.leases.release(CONTROLLER_LEASE, self.owner)
            except Exception as exc:  # the lease then simply expires
                log.warning("controller: could not release the lease: %s", exc)

    def _check(self, experiment_id: str, result: Tick) -> None:
        try:
            decision = self.controller.check(experiment_id, actor=self.owner)
        except Exception as exc:
            self.errors["experiment"] += 1
            self.failures[experiment_id] += 1
            message = f"{type(exc).__name__}: {exc}"
            result.errors[experiment_id] = message
            log.exception("controller: checking experiment %s failed", experiment_id)
            if self.failures[experiment_id] == ALERT_AFTER:
                self._alert(experiment_id, message)
            return
        self.checks += 1
        self.failures.pop(experiment_id, None)
        result.decisions[experiment_id] = decision
        if decision.action != "hold":
            log.info("controller: %s %s: %s", experiment_id, decision.action, decision.reason)

    def _triggers(self, result: Tick) -> None:
        """Evaluate the live triggers and start a cycle for every signature whose trigger fires."""
        self.last_trigger_check = time.time()
        try:
            verdicts = evaluate_triggers(self.settings, self.registry, self.controller.db)
        except Exception as exc:
            self.errors["triggers"] += 1
            result.errors["triggers"] = f"{type(exc).__name__}: {exc}"
            log.exception("controller: evaluating the triggers failed")
            return
        launched = {}
        for name, verdict in verdicts.items():
            running = self.cycles.get(name)
            if verdict.fire and running is not None and running.is_alive():
                verdict.fire, verdict.blocked = False, "its triggered cycle is still running"
            if verdict.fire:
                launched[name] = verdict.reason
                self.cycles[name] = self._start_cycle(name, verdict.reason)
        result.triggers = verdicts
        write_trigger_snapshot(self.settings.home_dir, {k: v.to_dict() for k, v in verdicts.items()}, launched,
                               self.last_trigger_check)

    def _canaries(self) -> None:
        """Score production and live candidates on their canary probes when due, in a thread of its own (a pass
        runs the model: it must not delay the experiment checks)."""
        if not self.settings.monitor.canary.enabled or (self.canary_thread and self.canary_thread.is_alive()):
            return

        def run() -> None:
            try:
                run_canaries(self.settings, self.registry, db=self.controller.db, lms=self.lms)
            except Exception:
                self.errors["canary"] += 1
                log.exception("controller: the canary pass failed")

        self.canary_thread = threading.Thread(target=run, name="ratchet-canaries", daemon=True)
        self.canary_thread.start()

    def _cycle_argv(self, signature: str, reason: str) -> list[str]:
        return [*ratchet_argv(self.settings), "cycle", "--signatures", signature, "--trigger", reason,
                *self.settings.schedule.cycle_args]

    def _start_cycle(self, signature: str, reason: str) -> threading.Thread:
        """Run the cycle as the scheduler would (its lock: never beside another cycle; logged) in a thread."""
        log.warning("controller: starting a cycle of %s: %s", signature, reason)
        self._announce(signature, reason)
        scheduler = Scheduler(self.settings, commands={"cycle": self.cycle_command(signature, reason)}, triggers={})
        thread = threading.Thread(target=scheduler.run_job, args=("cycle",), name=f"ratchet-cycle-{signature}",
                                  daemon=True)
        thread.start()
        return thread

    def _announce(self, signature: str, reason: str) -> None:
        alert = Alert(level="info", title="Re-optimization Triggered",
                      message=f"A cycle of {signature} started by itself: {reason}",
                      details={"signature": signature, "reason": reason, "controller": self.owner},
                      condition=f"loop/triggered/{signature}/{int(time.time())}")
        try:
            AlertDispatcher.from_settings(self.settings).dispatch([CheckResult(name="loop", events=[alert])])
        except Exception:
            log.exception("controller: could not announce the cycle of %s", signature)

    def _alert(self, experiment_id: str, message: str) -> None:
        alert = Alert(level="error", title="Rollout Controller Cannot Check Experiment",
                      message=f"The controller failed to check experiment {experiment_id} {ALERT_AFTER} times in a "
                              f"row: {message}",
                      details={"experiment_id": experiment_id, "error": message, "controller": self.owner},
                      condition=f"controller_check_failing:{experiment_id}")
        try:
            AlertDispatcher.from_settings(self.settings).dispatch([CheckResult(name="controller", events=[alert])])
        except Exception:
            log.exception("controller: could not send the alert about %s", experiment_id)

    def _info(self) -> dict[str, Any]:
        return {"started_at": self.started_at, "checks": self.checks, "errors": dict(self.errors),
                "interval_s": self.interval_s}

    def metrics_path(self) -> Path:
        return self.settings.home_dir / "metrics" / METRICS_TEXTFILE

    def _write_metrics(self) -> None:
        try:
            atomic_write_bytes(self.metrics_path(), render_metrics(self), mode=SHARED_FILE)
        except OSError as exc:
            log.warning("controller: cannot write %s: %s", self.metrics_path(), exc)


FAMILIES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ratchet_controller_heartbeat_timestamp_seconds": (
        "gauge", "When the acting rollout controller last ticked (Unix time).", ()),
    "ratchet_controller_leader": ("gauge", "1 while this controller holds the lease and acts, 0 once it lost it.", ()),
    "ratchet_controller_errors": ("counter", "Failed experiment checks and ticks since the controller started.",
                                  ("kind",)),
    "ratchet_controller_checks": ("counter", "Experiment checks done since the controller started.", ()),
}
"""Metric family → (type, help, labels): what ``<home>/metrics/ratchet_controller.prom`` holds."""


def render_metrics(supervisor: Supervisor) -> bytes:
    """The supervisor's metrics in Prometheus' text format (``ratchet serve`` exposes the file on ``/metrics``)."""
    registry = CollectorRegistry()
    made = {name: (Gauge if kind == "gauge" else Counter)(name, text, labels, registry=registry)
            for name, (kind, text, labels) in FAMILIES.items()}
    made["ratchet_controller_heartbeat_timestamp_seconds"].set(time.time())
    made["ratchet_controller_leader"].set(1 if supervisor.leader else 0)
    for kind in ("experiment", "tick"):
        made["ratchet_controller_errors"].labels(kind).inc(supervisor.errors[kind])
    made["ratchet_controller_checks"].inc(supervisor.checks)
    return generate_latest(registry)
