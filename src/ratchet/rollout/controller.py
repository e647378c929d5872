"""The rollout controller: start experiments, decide from per-arm counters, change state, publish routing.

At each check it reads both arms' counters of requests served within the experiment
(the baseline's from the same window, so the comparison is concurrent), runs the
anytime-valid triggers, and then:

* rolls back when a trigger fires (catastrophe guard, error rate, latency, quality),
* advances when the stage has lasted its minimum time and served its minimum
  candidate requests (paused time does not count),
* promotes when the next stage would be 100 % (or the last stage is done),
* otherwise holds, saying what it waits for.

A paused experiment keeps its traffic split and is still rolled back by a
trigger, but it never advances or promotes. After every change the routing file
and the experiment's snapshot are rewritten from the database (so a controller
killed between the two leaves nothing inconsistent: the next check repairs it),
and a promotion or rollback is announced to ``notify`` (the loop wires it to the
alert channels: :func:`ratchet.loop.rollouts.rollout_controller`).
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.errors import ConcurrentChangeError, ExperimentError, UnknownVersionError
from ratchet.programs.production import ANY, ProductionChange, ProductionPointers
from ratchet.programs.registry import NAME_PATTERN, ProgramRegistry
from ratchet.programs.versions import VersionStore
from ratchet.rollout.experiments import Experiment, ExperimentStore
from ratchet.rollout.projection import publish_routing
from ratchet.rollout.sequential import (
    Check,
    catastrophe_check,
    error_rate_check,
    latency_check,
    quality_check,
)
from ratchet.routing import ROUTING_FILENAME, RoutingState
from ratchet.store.atomic import atomic_write_json
from ratchet.store.db import StateDB
from ratchet.store.outcomes import ArmStats, read_arm_stats

__all__ = ["Decision", "RolloutController", "decide", "default_actor"]

log = logging.getLogger(__name__)


def default_actor(kind: str = "daemon") -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


@dataclass
class Decision:
    """What the controller concluded at one check."""

    action: str  # hold | advance | promote | rollback
    reason: str
    checks: list[Check] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"action": self.action, "reason": self.reason, "checks": [c.to_dict() for c in self.checks],
                "metrics": self.metrics}


def _arm_summary(stats: ArmStats) -> dict[str, Any]:
    return {"requests": stats.requests, "errors": stats.errors, "error_rate": round(stats.error_rate, 4),
            "errors_by_type": stats.errors_by_type, "latency_mean_ms": round(stats.latency_mean_s * 1000, 1),
            "latency_p95_ms": round(stats.latency_p95_s * 1000, 1), "quality_count": stats.quality_count,
            "quality_mean": None if stats.quality_mean is None else round(stats.quality_mean, 4)}


def decide(experiment: Experiment, baseline: ArmStats, candidate: ArmStats, stage_candidate_requests: int,
           now: float) -> Decision:
    """The controller's decision for an experiment given its arms' cumulative stats (pure: no I/O)."""
    cfg = experiment.config
    # ``alpha`` bounds the chance of any false rollback over the whole experiment: the three statistical
    # triggers share it (Bonferroni), each testing at alpha / 3.
    alpha = float(cfg.get("alpha", 0.05)) / 3
    checks = [
        catastrophe_check(candidate.errors, candidate.requests, window=int(cfg.get("catastrophe_window", 20))),
        error_rate_check(candidate.errors, candidate.requests, baseline.errors, baseline.requests,
                         threshold=float(cfg.get("max_error_rate_increase", 0.05)), alpha=alpha),
        latency_check(candidate.latency_mean_s, candidate.latency_std_s ** 2, candidate.requests,
                      baseline.latency_mean_s, baseline.latency_std_s ** 2, baseline.requests,
                      threshold_s=float(cfg.get("max_latency_increase_ms", 500.0)) / 1000, alpha=alpha),
        quality_check(candidate.quality_mean, (candidate.quality_std or 0.0) ** 2, candidate.quality_count,
                      baseline.quality_mean, (baseline.quality_std or 0.0) ** 2, baseline.quality_count,
                      floor=float(cfg.get("min_quality", 0.70)), alpha=alpha),
    ]
    elapsed = experiment.stage_elapsed(now)
    metrics = {"baseline": _arm_summary(baseline), "candidate": _arm_summary(candidate),
               "stage_percent": experiment.stage_percent, "stage_elapsed_s": round(elapsed, 1),
               "stage_candidate_requests": stage_candidate_requests}
    fired = [c for c in checks if c.fired]
    if fired:
        return Decision("rollback", f"{fired[0].trigger} trigger: {fired[0].message}", checks, metrics)
    if experiment.status != "running":
        return Decision("hold", "paused: holding traffic at the current split (triggers still apply)", checks, metrics)
    needed_s = experiment.min_stage_minutes * 60
    if elapsed < needed_s or stage_candidate_requests < experiment.min_stage_requests:
        return Decision("hold", (f"stage {experiment.stage_index + 1}/{len(experiment.stages)} "
                                 f"({experiment.stage_percent} %): {elapsed / 60:.1f} of "
                                 f"{experiment.min_stage_minutes:g} min, {stage_candidate_requests} of "
                                 f"{experiment.min_stage_requests} candidate requests"), checks, metrics)
    last = experiment.stage_index + 1 >= len(experiment.stages)
    if last or experiment.stages[experiment.stage_index + 1] >= 100:
        return Decision("promote", (f"all stages passed (last: {experiment.stage_percent} % for "
                                    f"{elapsed / 60:.1f} min, {stage_candidate_requests} candidate requests) "
                                    "with no trigger"), checks, metrics)
    nxt = experiment.stages[experiment.stage_index + 1]
    return Decision("advance", (f"stage {experiment.stage_percent} % done ({elapsed / 60:.1f} min, "
                                f"{stage_candidate_requests} candidate requests, no trigger): moving to {nxt} %"),
                    checks, metrics)


class RolloutController:
    """Experiments for every serving process: state in the database, routing in ``routing_config.json``."""

    def __init__(self, settings: Settings, registry: ProgramRegistry, *, db: StateDB | None = None,
                 notify: Callable[[Experiment], None] | None = None) -> None:
        self.settings = settings
        self.notify = notify
        self.registry = registry
        self.db = db or StateDB.connect(settings)
        self.store = ExperimentStore(self.db)
        self.versions = VersionStore(settings.home_dir)
        self.production = ProductionPointers(self.db, self.versions)
        self.routing_path = settings.home_dir / ROUTING_FILENAME
        self.snapshot_dir = settings.home_dir / "experiments"

    # -- operator commands --------------------------------------------------------------------
    def start(self, signature: str, candidate: str, *, experiment_id: str, baseline: str | None = None,
              stages: list[int] | None = None, min_stage_minutes: float | None = None,
              min_stage_requests: int | None = None, actor: str = "operator") -> Experiment:
        """Start an experiment at its first stage and publish its route."""
        spec = self.registry.get(signature)
        if not NAME_PATTERN.match(experiment_id):
            raise ExperimentError(f"invalid experiment id {experiment_id!r}: letters, digits and underscores")
        production = self.production.get(spec.name)
        baseline = baseline or production
        for version in (baseline, candidate):
            if not self.versions.exists(spec.name, version):
                raise UnknownVersionError(f"signature '{spec.name}' has no version '{version}'")
        if baseline == candidate:
            raise ExperimentError(f"baseline and candidate are both {baseline}: nothing to compare")
        self.versions.load(spec, candidate)  # refuses a damaged candidate before any traffic reaches it
        cfg = self.settings.rollout
        stages = list(stages or cfg.stages)
        if not stages or any(not 0 < s <= 100 for s in stages) or stages != sorted(set(stages)):
            raise ExperimentError(f"stages must be increasing percents in 1..100, got {stages}")
        experiment = Experiment(
            experiment_id=experiment_id, signature=spec.name, baseline_version=baseline,
            candidate_version=candidate, status="running", stages=stages, stage_index=0, stage_started_at=0.0,
            min_stage_minutes=cfg.min_stage_minutes if min_stage_minutes is None else min_stage_minutes,
            min_stage_requests=cfg.min_stage_requests if min_stage_requests is None else min_stage_requests,
            salt=experiment_id,
            config={**{k: getattr(cfg, k) for k in ("max_error_rate_increase", "max_latency_increase_ms",
                                                    "min_quality", "alpha", "catastrophe_window")},
                    "production_at_start": production},
        )
        experiment = self.store.create(experiment, actor=actor)
        self.publish()
        return experiment

    def pause(self, experiment_id: str, *, reason: str = "paused by operator", actor: str = "operator") -> Experiment:
        exp = self.store.get(experiment_id)
        changes = {"status": "paused", "paused_at": time.time()}
        changed = self.store.transition(exp, "pause", actor=actor, changes=changes, reason=reason,
                                        metrics=self._metrics(exp))
        self.publish()
        return changed

    def resume(self, experiment_id: str, *, reason: str = "resumed by operator", actor: str = "operator"
               ) -> Experiment:
        exp = self.store.get(experiment_id)
        paused = exp.paused_seconds + (time.time() - exp.paused_at if exp.paused_at else 0.0)
        changed = self.store.transition(exp, "resume", actor=actor,
                                        changes={"status": "running", "paused_at": None, "paused_seconds": paused},
                                        reason=reason, metrics=self._metrics(exp))
        self.publish()
        return changed

    def promote(self, experiment_id: str, *, reason: str = "promoted by operator", actor: str = "operator",
                metrics: dict[str, Any] | None = None, seen: Experiment | None = None) -> Experiment:
        """Make the candidate the production version and send it all traffic (one transaction: the experiment
        and the production pointer change together, and only if production is still what it was at the start).

        ``seen``: the experiment as the caller decided on it; if it changed since, nothing happens
        (:class:`~ratchet.errors.ConcurrentChangeError`).
        """
        exp = seen or self.store.get(experiment_id)
        changes: list[ProductionChange] = []

        def move_production(conn: Any) -> None:
            changes.append(self.production.set_in(
                conn, exp.signature, exp.candidate_version, actor=actor,
                expected=exp.config.get("production_at_start", ANY),
                reason=f"experiment {exp.experiment_id} promoted: {reason}", experiment_id=exp.experiment_id))

        changed = self.store.transition(exp, "promote", actor=actor, changes={"status": "promoted", "reason": reason,
                                                                             "paused_at": None},
                                        reason=reason, metrics=metrics or self._metrics(exp), also=move_production)
        self.production.project(changes[0])
        self._finish(changed)
        return changed

    def rollback(self, experiment_id: str, *, reason: str, actor: str = "operator",
                 metrics: dict[str, Any] | None = None, seen: Experiment | None = None) -> Experiment:
        """Send all traffic back to the baseline (within the serving processes' reload interval)."""
        exp = seen or self.store.get(experiment_id)
        changed = self.store.transition(exp, "rollback", actor=actor,
                                        changes={"status": "rolled_back", "reason": reason, "paused_at": None},
                                        reason=reason, metrics=metrics or self._metrics(exp))
        self._finish(changed)
        return changed

    def rollback_all(self, *, reason: str, actor: str = "operator") -> list[Experiment]:
        """Emergency: roll back every live experiment."""
        return [self.rollback(e.experiment_id, reason=reason, actor=actor)
                for e in self.store.list(statuses=("running", "paused"))]

    # -- the automatic decision ------------------------------------------------------------------
    def evaluate(self, experiment: Experiment, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        stats = read_arm_stats(self.db, experiment.signature, since=experiment.created_at,
                               versions=[experiment.baseline_version, experiment.candidate_version],
                               experiment_id=experiment.experiment_id)
        baseline = stats.get((experiment.baseline_version, "baseline"), ArmStats())
        candidate = stats.get((experiment.candidate_version, "candidate"), ArmStats())
        # Counters are per minute; a stage's own requests are the growth since it began (exact, any length).
        stage_requests = max(0, candidate.requests - experiment.stage_start_requests)
        return decide(experiment, baseline, candidate, stage_requests, now)

    def check(self, experiment_id: str, *, actor: str | None = None, now: float | None = None) -> Decision:
        """Decide for one experiment and apply the decision; returns it (``hold`` changes nothing).

        Acting on a stale read is impossible (every change compares-and-sets the experiment's revision):
        when an operator changed it meanwhile, the check holds and says so.
        """
        actor = actor or default_actor()
        self.reconcile()
        exp = self.store.get(experiment_id)
        if not exp.live:
            return Decision("hold", f"experiment is {exp.status}")
        production, at_start = self.production.get(exp.signature), exp.config.get("production_at_start")
        try:
            if at_start is not None and production != at_start:
                reason = (f"production of {exp.signature} was changed from {at_start} to {production} outside the "
                          "experiment")
                self.rollback(exp.experiment_id, reason=reason, actor=actor, seen=exp)
                return Decision("rollback", reason)
            decision = self.evaluate(exp, now)
            metrics = decision.to_dict()
            if decision.action == "rollback":
                self.rollback(exp.experiment_id, reason=decision.reason, actor=actor, metrics=metrics, seen=exp)
            elif decision.action == "promote":
                self.promote(exp.experiment_id, reason=decision.reason, actor=actor, metrics=metrics, seen=exp)
            elif decision.action == "advance":
                counted = decision.metrics["candidate"]["requests"]
                self.store.transition(exp, "advance", actor=actor,
                                      changes={"stage_index": exp.stage_index + 1, "stage_started_at": time.time(),
                                               "stage_start_requests": counted, "paused_seconds": 0.0},
                                      reason=decision.reason, metrics=metrics)
                self.publish()
        except ConcurrentChangeError as exc:
            return Decision("hold", f"changed by someone else meanwhile, nothing done: {exc}")
        return decision

    # -- publishing ---------------------------------------------------------------------------
    def publish(self) -> RoutingState:
        """Rewrite ``routing_config.json`` and the experiment snapshots from the database (idempotent)."""
        state, _ = publish_routing(self.store, self.routing_path)
        for exp in self.store.latest_per_signature().values():
            self._snapshot(exp)
        return state

    def reconcile(self) -> None:
        """Rewrite the projections (production files, routing file, snapshots) from the database.

        It never changes the database: what a crash between a commit and its projection left behind
        is repaired, and nobody's later decision (a manual promotion, say) is undone.
        """
        self.production.project_all()
        self.publish()

    def snapshot_path(self, experiment_id: str) -> Path:
        return self.snapshot_dir / f"experiment_{experiment_id}.json"

    def _snapshot(self, exp: Experiment) -> None:
        data = exp.to_dict()
        data["events"] = [e.to_dict() for e in self.store.events(exp.experiment_id)]
        atomic_write_json(self.snapshot_path(exp.experiment_id), data)

    def _finish(self, exp: Experiment) -> None:
        self.publish()
        self._alert(exp)

    def _alert(self, exp: Experiment) -> None:
        """Announce a promotion or rollback (never lets a failing announcement undo the change)."""
        if self.notify is None:
            return
        try:
            self.notify(exp)
        except Exception:
            log.exception("could not announce the end of experiment %s", exp.experiment_id)

    def _metrics(self, exp: Experiment) -> dict[str, Any]:
        try:
            return self.evaluate(exp).to_dict()
        except Exception as exc:  # metrics are informative; never block an operator's command on them
            return {"error": f"{type(exc).__name__}: {exc}"}
