"""Live triggers (seed 003's real-time engine): when a signature's next cycle should start by itself.

Per signature, with ``[loop]`` (and ``[loop.signatures.<name>]`` overrides):

- **degradation**: production's canary score (its fixed probes, when canaries run) dropped
  against its own trailing runs, or its success rate or mean feedback score over the last
  ``degradation_window_minutes`` dropped by more than ``performance_degradation_threshold`` (relative)
  against its own trailing baseline (the ``baseline_window_hours`` before) — judged on the one-sided
  95 % lower confidence bound of the drop, never on the point estimate, and only with
  ``min_degradation_requests`` in both windows;
- **feedback volume**: ``feedback_volume_threshold`` new feedback (scores and corrections: each is
  a labelled example for the next dataset) arrived on its requests since its last cycle started.

A trigger fires only if ``enable_automatic_optimization``, no experiment of the signature is live
(its rollout decides first), and no cycle of it started within ``optimization_interval_hours``
(a failed one counts too: a broken cycle is not retried every minute). Everything here reads; the
supervisor acts on what fires.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from scipy import stats as scipy_stats

from ratchet.config import Settings
from ratchet.config.settings import TriggerSettings
from ratchet.monitor.canary.degradation import production_degradation
from ratchet.monitor.drift.stats import excess_lower_bound
from ratchet.monitor.runs import read_runs
from ratchet.programs import ProgramRegistry
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.rollout.experiments import LIVE, ExperimentStore
from ratchet.store.db import StateDB
from ratchet.store.feedback import count_feedback
from ratchet.store.outcomes import ArmStats, read_arm_stats

__all__ = ["TRIGGER_ALPHA", "TriggerVerdict", "evaluate_triggers", "last_cycle_starts", "quality_drop_lower_bound"]

TRIGGER_ALPHA = 0.05
"""One-sided error level of the degradation test (a false trigger costs one cycle, not a deployment)."""


@dataclass
class TriggerVerdict:
    """One signature's trigger evaluation: whether a cycle should start, why (or why not), and the numbers."""

    signature: str
    fire: bool = False
    kind: str | None = None  # degradation | feedback_volume
    reason: str = ""
    blocked: str | None = None  # why a condition that holds does not start a cycle now
    numbers: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_triggers(settings: Settings, registry: ProgramRegistry, db: StateDB, *,
                      now: float | None = None) -> dict[str, TriggerVerdict]:
    """Every registered signature's verdict (read-only)."""
    now = time.time() if now is None else now
    live = {e.signature for e in ExperimentStore(db).list(statuses=LIVE)}
    starts = last_cycle_starts(settings, registry)
    pointers = ProductionPointers(db, VersionStore(settings.home_dir, db))
    verdicts = {}
    for name in registry.names():
        config: TriggerSettings = settings.loop.for_signature(name)
        verdict = TriggerVerdict(name)
        since = starts.get(name, 0.0)
        verdict.numbers["last_cycle_started_at"] = since or None
        _feedback_volume(verdict, db, config, since)
        if not verdict.fire:
            _degradation(verdict, settings, db, config, pointers.get(name), now)
        if verdict.fire:
            blocked = None
            if not config.enable_automatic_optimization:
                blocked = "automatic optimization is off (loop.enable_automatic_optimization)"
            elif name in live:
                blocked = "an experiment of it is live: its rollout decides first"
            elif since and now - since < config.optimization_interval_hours * 3600:
                wait = config.optimization_interval_hours * 3600 - (now - since)
                blocked = (f"its last cycle started {(now - since) / 3600:.1f} h ago "
                           f"(loop.optimization_interval_hours = {config.optimization_interval_hours:g}; "
                           f"{wait / 60:.0f} min to wait)")
            if blocked:
                verdict.fire, verdict.blocked = False, blocked
        verdicts[name] = verdict
    return verdicts


def last_cycle_starts(settings: Settings, registry: ProgramRegistry) -> dict[str, float]:
    """When the newest cycle (not a dry run, any outcome) that included each signature started."""
    starts: dict[str, float] = {}
    for run in read_runs(settings.home_dir / "runs").runs:  # newest first
        started = run.started_at
        if run.dry_run or started is None:
            continue
        included = (run.data.get("options") or {}).get("signatures") or registry.names()
        for name in included:
            starts.setdefault(str(name), started.timestamp())
    return starts


def _feedback_volume(verdict: TriggerVerdict, db: StateDB, config: TriggerSettings, since: float) -> None:
    counted = count_feedback(db, verdict.signature, since=since)
    verdict.numbers.update(new_feedback=counted["feedback"], new_corrections=counted["corrections"],
                           feedback_volume_threshold=config.feedback_volume_threshold)
    if counted["feedback"] >= config.feedback_volume_threshold:
        verdict.fire, verdict.kind = True, "feedback_volume"
        origin = "its last cycle" if since else "the first request"
        verdict.reason = (f"feedback_volume: {counted['feedback']} new feedback ({counted['corrections']} corrections) "
                          f"since {origin} ≥ {config.feedback_volume_threshold}")


def _degradation(verdict: TriggerVerdict, settings: Settings, db: StateDB, config: TriggerSettings,
                 production: str, now: float) -> None:
    loop = settings.loop
    recent_since = now - loop.degradation_window_minutes * 60
    baseline_since = recent_since - loop.baseline_window_hours * 3600
    recent = _production_stats(db, verdict.signature, production, recent_since, now)
    trailing = _production_stats(db, verdict.signature, production, baseline_since, recent_since)
    threshold, minimum = config.performance_degradation_threshold, loop.min_degradation_requests
    verdict.numbers.update(production=production, threshold=threshold, recent_requests=recent.requests,
                           baseline_requests=trailing.requests)
    if min(recent.requests, trailing.requests) >= minimum and trailing.requests > trailing.errors:
        base_success = 1 - trailing.error_rate
        drop_low = excess_lower_bound(recent.errors, recent.requests, trailing.errors, trailing.requests,
                                      TRIGGER_ALPHA)  # failures up = success down
        verdict.numbers.update(success_rate=round(1 - recent.error_rate, 4), baseline_success_rate=round(
            base_success, 4), success_drop_lower_bound=round(drop_low, 4))
        if drop_low > threshold * base_success:
            verdict.fire, verdict.kind = True, "degradation"
            verdict.reason = (f"degradation: production {production}'s success rate fell to "
                              f"{1 - recent.error_rate:.1%} from {base_success:.1%} (drop ≥ {drop_low:.1%} at 95 %, "
                              f"more than {threshold:.0%} of the baseline)")
            return
    canary = production_degradation(db, verdict.signature, production, settings.monitor.canary)
    if canary.judged:
        verdict.numbers["canary"] = canary.to_dict()
        if canary.degraded:
            verdict.fire, verdict.kind = True, "degradation"
            verdict.reason = f"degradation: production {production}'s canary score dropped: {canary.message}"
            return
    quality_n = (recent.quality_count, trailing.quality_count)
    if min(quality_n) >= minimum and trailing.quality_mean:
        low = quality_drop_lower_bound(trailing, recent)
        verdict.numbers.update(quality=round(recent.quality_mean or 0.0, 4),
                               baseline_quality=round(trailing.quality_mean, 4), quality_drop_lower_bound=round(low, 4))
        if low > threshold * trailing.quality_mean:
            verdict.fire, verdict.kind = True, "degradation"
            verdict.reason = (f"degradation: production {production}'s feedback quality fell to "
                              f"{recent.quality_mean:.3f} from {trailing.quality_mean:.3f} (drop ≥ {low:.3f} at 95 %, "
                              f"more than {threshold:.0%} of the baseline)")


def quality_drop_lower_bound(baseline: ArmStats, recent: ArmStats, alpha: float = TRIGGER_ALPHA) -> float:
    """One-sided ``1 - alpha`` lower bound of ``baseline mean − recent mean`` of feedback scores (Welch)."""
    n1, n2 = baseline.quality_count, recent.quality_count
    m1, m2 = baseline.quality_mean or 0.0, recent.quality_mean or 0.0
    v1, v2 = (baseline.quality_std or 0.0) ** 2 / n1, (recent.quality_std or 0.0) ** 2 / n2
    se = math.sqrt(v1 + v2)
    if se == 0:
        return m1 - m2
    dof = (v1 + v2) ** 2 / ((v1 * v1 / (n1 - 1) if n1 > 1 else 0) + (v2 * v2 / (n2 - 1) if n2 > 1 else 0) or 1e-12)
    return (m1 - m2) - float(scipy_stats.t.ppf(1 - alpha, dof)) * se


def _production_stats(db: StateDB, signature: str, production: str, since: float, until: float) -> ArmStats:
    """Production's requests in the window, whatever arm they were served on (baseline outside experiments)."""
    stats = read_arm_stats(db, signature, since=since, until=until, versions=[production])
    return stats.get((production, "baseline"), ArmStats())


