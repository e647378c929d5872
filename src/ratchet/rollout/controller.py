"""The rollout controller: start experiments, decide from per-arm counters, change state, publish routing.

At each check it reads both arms' counters of requests served within the experiment
(the baseline's from the same window, so the comparison is concurrent), runs the
anytime-valid triggers (:mod:`ratchet.rollout.decision`), and then:

* rolls back when a trigger fires (catastrophe guard, error rate, latency, quality — or, in
  shadow, agreement with production —, and the canary trigger),
* moves a shadow experiment to its first traffic stage when the shadow stage passed,
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
import secrets
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ratchet.audit import audit_context, audited
from ratchet.config import Settings
from ratchet.errors import ConcurrentChangeError, ExperimentError, UnknownVersionError
from ratchet.programs.production import ANY, ProductionChange, ProductionPointers
from ratchet.programs.registry import NAME_PATTERN, ProgramRegistry
from ratchet.programs.versions import VersionStore
from ratchet.rollout.canary import experiment_canary_check
from ratchet.rollout.decision import Decision, decide, decide_shadow
from ratchet.rollout.experiments import LIVE, Experiment, ExperimentStore
from ratchet.rollout.projection import publish_routing
from ratchet.routing import ROUTING_FILENAME, RoutingState
from ratchet.store.atomic import atomic_write_json
from ratchet.store.db import StateDB
from ratchet.store.outcomes import ArmStats, read_agreement, read_arm_stats

__all__ = ["Decision", "RolloutController", "decide", "decide_shadow", "default_actor"]

log = logging.getLogger(__name__)


def default_actor(kind: str = "daemon") -> str:
    return f"{kind}:{socket.gethostname()}:{os.getpid()}"


class RolloutController:
    """Experiments for every serving process: state in the database, routing in ``routing_config.json``."""

    def __init__(self, settings: Settings, registry: ProgramRegistry, *, db: StateDB | None = None,
                 notify: Callable[[Experiment], None] | None = None) -> None:
        self.settings = settings
        self.notify = notify
        self.registry = registry
        self.db = db or StateDB.connect(settings)
        self.store = ExperimentStore(self.db)
        self.versions = VersionStore(settings.home_dir, self.db)
        self.production = ProductionPointers(self.db, self.versions)
        self.routing_path = settings.home_dir / ROUTING_FILENAME
        self.snapshot_dir = settings.home_dir / "experiments"

    # -- operator commands --------------------------------------------------------------------
    def start(self, signature: str, candidate: str, *, experiment_id: str, baseline: str | None = None,
              stages: list[int] | None = None, min_stage_minutes: float | None = None,
              min_stage_requests: int | None = None, shadow: bool | None = None,
              actor: str = "operator") -> Experiment:
        """Start an experiment — in shadow (``shadow``, default ``rollout.start_in_shadow``) or at its first
        stage — and publish its route."""
        with audited(self.settings, "experiment.start", target=experiment_id, actor=actor,
                     details={"signature": signature, "candidate": candidate, "baseline": baseline}) as note:
            experiment = self._start(signature, candidate, experiment_id=experiment_id, baseline=baseline,
                                     stages=stages, min_stage_minutes=min_stage_minutes,
                                     min_stage_requests=min_stage_requests, shadow=shadow, actor=actor)
            note.details.update(baseline=experiment.baseline_version, status=experiment.status,
                                stages=experiment.stages)
        return experiment

    def _start(self, signature: str, candidate: str, *, experiment_id: str, baseline: str | None,
               stages: list[int] | None, min_stage_minutes: float | None, min_stage_requests: int | None,
               shadow: bool | None, actor: str) -> Experiment:
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
        shadow = cfg.start_in_shadow if shadow is None else shadow
        experiment = Experiment(
            experiment_id=experiment_id, signature=spec.name, baseline_version=baseline,
            candidate_version=candidate, status="shadow" if shadow else "running", stages=stages, stage_index=0,
            stage_started_at=0.0,
            min_stage_minutes=cfg.min_stage_minutes if min_stage_minutes is None else min_stage_minutes,
            min_stage_requests=cfg.min_stage_requests if min_stage_requests is None else min_stage_requests,
            salt=f"{experiment_id}:{secrets.token_hex(16)}",  # unguessable: clients cannot pick their arm
            config={**{k: getattr(cfg, k) for k in ("max_error_rate_increase", "max_latency_increase_ms",
                                                    "min_quality", "alpha", "catastrophe_window", "shadow_share",
                                                    "shadow_min_requests", "shadow_min_minutes", "min_agreement")},
                    "production_at_start": production},
        )
        experiment = self.store.create(experiment, actor=actor)
        self.publish()
        return experiment

    def pause(self, experiment_id: str, *, reason: str = "paused by operator", actor: str = "operator") -> Experiment:
        with audited(self.settings, "experiment.pause", target=experiment_id, actor=actor) as note:
            note.reason = reason
            exp = self.store.get(experiment_id)
            changes = {"status": "paused", "paused_at": time.time()}
            changed = self.store.transition(exp, "pause", actor=actor, changes=changes, reason=reason,
                                            metrics=self._metrics(exp))
            note.details.update(signature=exp.signature, stage_percent=exp.stage_percent)
        self.publish()
        return changed

    def resume(self, experiment_id: str, *, reason: str = "resumed by operator", actor: str = "operator"
               ) -> Experiment:
        with audited(self.settings, "experiment.resume", target=experiment_id, actor=actor) as note:
            note.reason = reason
            exp = self.store.get(experiment_id)
            paused = exp.paused_seconds + (time.time() - exp.paused_at if exp.paused_at else 0.0)
            changed = self.store.transition(exp, "resume", actor=actor,
                                            changes={"status": "running", "paused_at": None, "paused_seconds": paused},
                                            reason=reason, metrics=self._metrics(exp))
            note.details.update(signature=exp.signature, stage_percent=exp.stage_percent)
        self.publish()
        return changed

    def promote(self, experiment_id: str, *, reason: str = "promoted by operator", actor: str = "operator",
                metrics: dict[str, Any] | None = None, seen: Experiment | None = None) -> Experiment:
        """Make the candidate the production version and send it all traffic (one transaction: the experiment
        and the production pointer change together, and only if production is still what it was at the start).

        ``seen``: the experiment as the caller decided on it; if it changed since, nothing happens
        (:class:`~ratchet.errors.ConcurrentChangeError`).
        """
        with audited(self.settings, "experiment.promote", target=experiment_id, actor=actor) as note:
            note.reason = reason
            exp = seen or self.store.get(experiment_id)
            note.details.update(signature=exp.signature, candidate=exp.candidate_version,
                                production_before=exp.config.get("production_at_start"))
            changed = self._promote(exp, reason=reason, actor=actor, metrics=metrics)
        self._finish(changed)
        return changed

    def _promote(self, exp: Experiment, *, reason: str, actor: str, metrics: dict[str, Any] | None) -> Experiment:
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
        return changed

    def rollback(self, experiment_id: str, *, reason: str, actor: str = "operator",
                 metrics: dict[str, Any] | None = None, seen: Experiment | None = None) -> Experiment:
        """Send all traffic back to the baseline (within the serving processes' reload interval)."""
        with audited(self.settings, "experiment.rollback", target=experiment_id, actor=actor) as note:
            note.reason = reason
            exp = seen or self.store.get(experiment_id)
            note.details.update(signature=exp.signature, baseline=exp.baseline_version, from_status=exp.status,
                                stage_percent=exp.stage_percent)
            changes: dict[str, Any] = {"status": "rolled_back", "reason": reason, "paused_at": None}
            if exp.status == "shadow":  # remembered: it never served anyone
                changes["config"] = {**exp.config, "rolled_back_in": "shadow"}
            changed = self.store.transition(exp, "rollback", actor=actor, changes=changes, reason=reason,
                                            metrics=metrics or self._metrics(exp))
        self._finish(changed)
        return changed

    def rollback_all(self, *, reason: str, actor: str = "operator") -> list[Experiment]:
        """Emergency: roll back every live experiment (each one audited, and the command as a whole)."""
        with audited(self.settings, "experiment.rollback_all", actor=actor) as note:
            note.reason = reason
            rolled = []
            for e in self.store.list(statuses=LIVE):
                rolled.append(self.rollback(e.experiment_id, reason=reason, actor=actor))
                note.details["experiments"] = [r.experiment_id for r in rolled]
            note.details["count"] = len(rolled)
        return rolled

    # -- the automatic decision ------------------------------------------------------------------
    def evaluate(self, experiment: Experiment, now: float | None = None) -> Decision:
        now = time.time() if now is None else now
        stats = read_arm_stats(self.db, experiment.signature, since=experiment.created_at,
                               versions=[experiment.baseline_version, experiment.candidate_version],
                               experiment_id=experiment.experiment_id,
                               feedback_per_key=self.settings.rollout.max_feedback_per_key)
        baseline = stats.get((experiment.baseline_version, "baseline"), ArmStats())
        canary = [experiment_canary_check(self.db, experiment, self.settings.monitor.canary)]
        if experiment.status == "shadow":
            shadow = stats.get((experiment.candidate_version, "shadow"), ArmStats())
            agreement = read_agreement(self.db, experiment.signature, experiment.candidate_version,
                                       experiment.experiment_id)
            return decide_shadow(experiment, baseline, shadow, agreement, now, canary)
        candidate = stats.get((experiment.candidate_version, "candidate"), ArmStats())
        # Counters are per minute; a stage's own requests are the growth since it began (exact, any length).
        stage_requests = max(0, candidate.requests - experiment.stage_start_requests)
        return decide(experiment, baseline, candidate, stage_requests, now, canary)

    def check(self, experiment_id: str, *, actor: str | None = None, now: float | None = None) -> Decision:
        """Decide for one experiment and apply the decision; returns it (``hold`` changes nothing).

        Acting on a stale read is impossible (every change compares-and-sets the experiment's revision):
        when an operator changed it meanwhile, the check holds and says so.
        """
        actor = actor or default_actor()
        with audit_context(source="controller"):  # what it changes is audited as the controller's decision
            return self._check(experiment_id, actor=actor, now=now)

    def _check(self, experiment_id: str, *, actor: str, now: float | None) -> Decision:
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
                with audited(self.settings, "experiment.advance", target=exp.experiment_id, actor=actor) as note:
                    note.reason = decision.reason
                    moved = self.store.transition(exp, "advance", actor=actor, changes=self._next_stage(exp, decision),
                                                  reason=decision.reason, metrics=metrics)
                    note.details.update(signature=exp.signature, from_status=exp.status,
                                        from_percent=exp.stage_percent, to_percent=moved.stage_percent)
                self.publish()
        except ConcurrentChangeError as exc:
            return Decision("hold", f"changed by someone else meanwhile, nothing done: {exc}")
        return decision

    @staticmethod
    def _next_stage(exp: Experiment, decision: Decision) -> dict[str, Any]:
        """The changes that move ``exp`` on: from shadow to its first stage, or to its next stage."""
        if exp.status == "shadow":  # no candidate request was served yet: the first stage counts from 0
            return {"status": "running", "stage_index": 0, "stage_started_at": time.time(),
                    "stage_start_requests": 0, "paused_seconds": 0.0}
        return {"stage_index": exp.stage_index + 1, "stage_started_at": time.time(),
                "stage_start_requests": decision.metrics["candidate"]["requests"], "paused_seconds": 0.0}

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
