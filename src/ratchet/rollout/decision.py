"""What the rollout controller concludes at one check, from an experiment's numbers alone (pure: no
I/O).

In ``shadow`` the candidate serves nobody: :func:`decide_shadow` compares its shadow calls with the
baseline's requests (catastrophe guard, error rate — parse failures included —, latency) and its
agreement with production's answers, rolls back when a trigger fires, and moves to the first traffic
stage once the shadow stage has lasted ``shadow_min_minutes``, made ``shadow_min_requests`` calls
and its agreement estimate is at least ``min_agreement`` (a low estimate holds until the agreement
trigger, or more calls, decide: passing needs evidence for, not only no evidence against). In a
traffic stage :func:`decide` does the same for the candidate's real requests (quality from feedback
instead of agreement) and advances or promotes. Extra checks (the canary trigger) count like the
others: any fired check rolls back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet.rollout.experiments import Experiment
from ratchet.rollout.sequential import (
    Check,
    agreement_check,
    catastrophe_check,
    error_rate_check,
    latency_check,
    quality_check,
)
from ratchet.store.outcomes import Agreement, ArmStats

__all__ = ["Decision", "decide", "decide_shadow", "trigger_alpha"]


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


def arm_summary(stats: ArmStats) -> dict[str, Any]:
    """An arm's numbers as decisions and events record them."""
    return {"requests": stats.requests, "errors": stats.errors, "error_rate": round(stats.error_rate, 4),
            "errors_by_type": stats.errors_by_type, "latency_mean_ms": round(stats.latency_mean_s * 1000, 1),
            "latency_p95_ms": round(stats.latency_p95_s * 1000, 1), "quality_count": stats.quality_count,
            "quality_mean": None if stats.quality_mean is None else round(stats.quality_mean, 4)}


def trigger_alpha(experiment: Experiment) -> float:
    # ``alpha`` bounds the chance of any false rollback over the whole experiment: the three statistical
    # triggers share it (Bonferroni), each testing at alpha / 3.
    return float(experiment.config.get("alpha", 0.05)) / 3


def _guardrails(experiment: Experiment, baseline: ArmStats, candidate: ArmStats, alpha: float) -> list[Check]:
    """Catastrophe, error rate and latency of ``candidate`` (served or shadow calls) against ``baseline``."""
    cfg = experiment.config
    return [
        catastrophe_check(candidate.errors, candidate.requests, window=int(cfg.get("catastrophe_window", 20))),
        error_rate_check(candidate.errors, candidate.requests, baseline.errors, baseline.requests,
                         threshold=float(cfg.get("max_error_rate_increase", 0.05)), alpha=alpha),
        latency_check(candidate.latency_mean_s, candidate.latency_std_s ** 2, candidate.requests,
                      baseline.latency_mean_s, baseline.latency_std_s ** 2, baseline.requests,
                      threshold_s=float(cfg.get("max_latency_increase_ms", 500.0)) / 1000, alpha=alpha),
    ]


def _rollback(checks: list[Check], metrics: dict[str, Any]) -> Decision | None:
    fired = [c for c in checks if c.fired]
    if not fired:
        return None
    return Decision("rollback", f"{fired[0].trigger} trigger: {fired[0].message}", checks, metrics)


def decide(experiment: Experiment, baseline: ArmStats, candidate: ArmStats, stage_candidate_requests: int,
           now: float, extra_checks: Sequence[Check] = ()) -> Decision:
    """The controller's decision for an experiment in a traffic stage given its arms' cumulative stats."""
    cfg = experiment.config
    alpha = trigger_alpha(experiment)
    checks = [
        *_guardrails(experiment, baseline, candidate, alpha),
        quality_check(candidate.quality_mean, (candidate.quality_std or 0.0) ** 2, candidate.quality_count,
                      baseline.quality_mean, (baseline.quality_std or 0.0) ** 2, baseline.quality_count,
                      floor=float(cfg.get("min_quality", 0.70)), alpha=alpha),
        *extra_checks,
    ]
    elapsed = experiment.stage_elapsed(now)
    metrics = {"baseline": arm_summary(baseline), "candidate": arm_summary(candidate),
               "stage_percent": experiment.stage_percent, "stage_elapsed_s": round(elapsed, 1),
               "stage_candidate_requests": stage_candidate_requests}
    if (rollback := _rollback(checks, metrics)) is not None:
        return rollback
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


def decide_shadow(experiment: Experiment, baseline: ArmStats, shadow: ArmStats, agreement: Agreement, now: float,
                  extra_checks: Sequence[Check] = ()) -> Decision:
    """The controller's decision for an experiment in shadow: roll back, hold, or move to the first stage."""
    cfg = experiment.config
    alpha = trigger_alpha(experiment)
    checks = [
        *_guardrails(experiment, baseline, shadow, alpha),
        agreement_check(agreement.agreed, agreement.compared, min_agreement=float(cfg.get("min_agreement", 0.3)),
                        alpha=alpha),
        *extra_checks,
    ]
    elapsed = experiment.stage_elapsed(now)
    metrics = {"baseline": arm_summary(baseline), "shadow": arm_summary(shadow),
               "agreement": {"compared": agreement.compared, "agreed": agreement.agreed,
                             "rate": None if agreement.rate is None else round(agreement.rate, 4)},
               "stage_percent": 0, "stage_elapsed_s": round(elapsed, 1), "stage_candidate_requests": 0}
    if (rollback := _rollback(checks, metrics)) is not None:
        return rollback
    minutes, calls = float(cfg.get("shadow_min_minutes", 0.0)), int(cfg.get("shadow_min_requests", 1))
    if elapsed < minutes * 60 or shadow.requests < calls:
        return Decision("hold", (f"shadow: {elapsed / 60:.1f} of {minutes:g} min, {shadow.requests} of {calls} "
                                 "shadow calls"), checks, metrics)
    floor = float(cfg.get("min_agreement", 0.3))
    if agreement.rate is None or agreement.rate < floor:  # not yet proven bad, but not good enough to serve
        seen = "no call both answered" if agreement.rate is None else f"agreement {agreement.rate:.0%}"
        return Decision("hold", (f"shadow: {seen} is below min_agreement {floor:.0%}; more shadow calls will "
                                 "decide"), checks, metrics)
    rate = f"{agreement.rate:.0%}"
    return Decision("advance", (f"shadow passed ({shadow.requests} shadow calls in {elapsed / 60:.1f} min, "
                                f"agreement {rate}, no trigger): moving to {experiment.stages[0]} %"),
                    checks, metrics)
