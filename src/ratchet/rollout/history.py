"""An experiment's arms over time: what the triggers saw at each moment, read back from the per-minute counters.

The state database keeps no series of decisions, but the counters it judges are kept per epoch minute
(``arm_outcomes``, ``arm_errors``, ``arm_latency_buckets``) and every feedback score is tied to the request
it scores and that request's time (``request_index``). So the history of an experiment is exact: at each
point ``t`` it is :func:`~ratchet.store.outcomes.read_arm_stats` over ``[created_at, t)`` — the same query,
window and feedback cap the controller uses (:meth:`RolloutController.evaluate`), cumulative because the
triggers judge cumulative numbers. Two things differ from what the controller saw at the time: feedback that
arrived later counts for its request's time, and minutes older than ``cleanup.outcomes_days`` are gone
(``prune_outcomes``).

Each point carries the arm's anytime-valid interval — the same confidence sequence (:func:`cs_halfwidth`),
mixing scale and per-trigger error level as the triggers, here for one arm's level rather than the
difference — for the error rate, the mean latency and the mean quality; latency also has its p50 and p95.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from ratchet.rollout.decision import trigger_alpha
from ratchet.rollout.experiments import Experiment
from ratchet.rollout.sequential import ERROR_RATE_TAU, LATENCY_TAU_S, QUALITY_TAU, cs_halfwidth
from ratchet.store.db import StateDB
from ratchet.store.outcomes import ArmStats, read_arm_stats

__all__ = ["ArmPoint", "ExperimentHistory", "arm_point", "experiment_history"]

MAX_POINTS = 30


@dataclass(frozen=True)
class ArmPoint:
    """One arm's cumulative numbers from the experiment's start until ``at`` (epoch seconds)."""

    at: float
    requests: int
    errors: int
    error_rate: float | None  # None: no request yet
    error_low: float | None
    error_high: float | None
    latency_mean_s: float | None
    latency_low_s: float | None
    latency_high_s: float | None
    latency_p50_s: float | None
    latency_p95_s: float | None
    quality_count: int
    quality_mean: float | None  # None: no feedback score yet
    quality_low: float | None
    quality_high: float | None


@dataclass(frozen=True)
class ExperimentHistory:
    """Each arm's points, oldest first; ``arms`` maps an arm (baseline, candidate, shadow) to its version."""

    experiment_id: str
    arms: dict[str, str]
    points: dict[str, list[ArmPoint]]
    alpha: float  # each interval's error level (the experiment's alpha shared by its triggers)
    start: float
    end: float


def arm_point(stats: ArmStats, at: float, alpha: float) -> ArmPoint:
    """``stats`` as a point, with its anytime-valid intervals at error level ``alpha``."""
    n = stats.requests
    if n <= 0:
        rate = low = high = mean = mlow = mhigh = p50 = p95 = None
    else:
        rate = stats.error_rate
        smoothed = (stats.errors + 1) / (n + 2)  # the error-rate trigger's variance floor at 0 and 100 %
        h = cs_halfwidth(smoothed * (1 - smoothed) / n, ERROR_RATE_TAU, alpha)
        low, high = max(0.0, rate - h), min(1.0, rate + h)
        mean = stats.latency_mean_s
        hm = cs_halfwidth(stats.latency_std_s ** 2 / n, LATENCY_TAU_S, alpha)
        mlow, mhigh = max(0.0, mean - hm), mean + hm
        p50, p95 = stats.latency_p50_s, stats.latency_p95_s
    q, qn = stats.quality_mean, stats.quality_count
    if q is None or qn <= 0:
        q = qlow = qhigh = None
    else:
        hq = cs_halfwidth(((stats.quality_std or 0.0) ** 2 + 1e-4) / qn, QUALITY_TAU, alpha)  # as quality_check
        qlow, qhigh = max(0.0, q - hq), min(1.0, q + hq)
    return ArmPoint(at=at, requests=n, errors=stats.errors, error_rate=rate, error_low=low, error_high=high,
                    latency_mean_s=mean, latency_low_s=mlow, latency_high_s=mhigh, latency_p50_s=p50,
                    latency_p95_s=p95, quality_count=qn, quality_mean=q, quality_low=qlow, quality_high=qhigh)


def _moments(start: float, end: float, points: int) -> list[float]:
    """Up to ``points`` times from ``start`` to ``end``: ends of whole minutes (the counters' resolution), the
    last one ``end`` itself."""
    first, last = math.floor(start / 60), math.floor(end / 60)
    minutes = last - first + 1
    k = max(1, min(points, minutes))
    if k == 1:
        return [end]
    chosen = sorted({first + round(i * (minutes - 1) / (k - 1)) for i in range(k)})
    return [min((m + 1) * 60.0, end) for m in chosen[:-1]] + [end]


def experiment_history(db: StateDB, experiment: Experiment, *, now: float | None = None,
                       points: int = MAX_POINTS, feedback_per_key: int | None = None) -> ExperimentHistory:
    """Each arm of ``experiment`` at up to ``points`` moments from its start to its end (or ``now``)."""
    now = time.time() if now is None else now
    end = max(experiment.created_at, experiment.ended_at if experiment.ended_at is not None else now)
    arms = {"baseline": experiment.baseline_version, "candidate": experiment.candidate_version,
            "shadow": experiment.candidate_version}
    alpha = trigger_alpha(experiment)
    series: dict[str, list[ArmPoint]] = {arm: [] for arm in arms}
    for at in _moments(experiment.created_at, end, points):
        stats = read_arm_stats(db, experiment.signature, since=experiment.created_at, until=at,
                               versions=[experiment.baseline_version, experiment.candidate_version],
                               experiment_id=experiment.experiment_id, feedback_per_key=feedback_per_key)
        for arm, version in arms.items():
            series[arm].append(arm_point(stats.get((version, arm), ArmStats()), at, alpha))
    in_shadow = experiment.status == "shadow" or experiment.config.get("rolled_back_in") == "shadow"
    for arm in ("shadow", "candidate"):  # an arm that never served (no shadow stage; not out of shadow yet)
        if not series[arm][-1].requests and (arm == "shadow") != in_shadow:
            del arms[arm], series[arm]
    return ExperimentHistory(experiment_id=experiment.experiment_id, arms=arms, points=series, alpha=alpha,
                             start=experiment.created_at, end=end)
