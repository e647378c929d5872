"""A/B experiments: rollbacks (at once, once), long-running experiments, traffic that does not match its split."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult
from ratchet.monitor.state import iso
from ratchet.rollout.experiments import Experiment, ExperimentStore
from ratchet.store.db import StateDB
from ratchet.store.outcomes import read_arm_stats

__all__ = ["NAME", "ROLLBACK_LOOKBACK_DAYS", "SRM_MIN_REQUESTS", "SRM_TOLERANCE", "TrafficSplit", "check_ab_tests",
           "promotion_alert", "rollback_alert", "traffic_split"]

NAME = "ab_tests"
ROLLBACK_LOOKBACK_DAYS = 7.0
"""Rollbacks that ended this long ago (or since the previous check, if that is longer) are alerted, once each."""
SRM_TOLERANCE = 0.10
SRM_MIN_REQUESTS = 100


@dataclass(frozen=True)
class TrafficSplit:
    """A live experiment's configured candidate share and what its arms served since its stage began."""

    configured: float
    baseline_requests: int
    candidate_requests: int
    since: float

    @property
    def total(self) -> int:
        return self.baseline_requests + self.candidate_requests

    @property
    def observed(self) -> float | None:
        return self.candidate_requests / self.total if self.total else None

    @property
    def mismatch(self) -> bool:
        """A sample-ratio mismatch: at least 100 requests and the observed share off by more than 10 points."""
        observed = self.observed
        if observed is None or self.total < SRM_MIN_REQUESTS:
            return False
        return abs(observed - self.configured) > SRM_TOLERANCE

    def to_dict(self) -> dict[str, Any]:
        observed = self.observed
        return {"configured_percent": round(self.configured * 100, 1),
                "observed_percent": None if observed is None else round(observed * 100, 1),
                "baseline_requests": self.baseline_requests, "candidate_requests": self.candidate_requests,
                "since": iso(self.since)}


def traffic_split(db: StateDB, experiment: Experiment) -> TrafficSplit:
    """Requests per arm since the current stage began (from the first whole minute: counters are per minute)."""
    since = math.ceil(experiment.stage_started_at / 60) * 60
    stats = read_arm_stats(db, experiment.signature, since=since,
                           versions=[experiment.baseline_version, experiment.candidate_version])
    baseline = stats.get((experiment.baseline_version, "baseline"))
    candidate = stats.get((experiment.candidate_version, "candidate"))
    return TrafficSplit(experiment.candidate_share, baseline.requests if baseline else 0,
                        candidate.requests if candidate else 0, since)


def check_ab_tests(settings: Settings, *, db: StateDB | None = None, now: float | None = None,
                   since: float | None = None) -> CheckResult:
    """Seed 001's A/B checks over every experiment in the state database.

    * a rollback that ended since ``since`` (the previous check) or within the last 7 days → warning
      "A/B Test Rolled Back" (a one-time event: the dispatcher sends it once);
    * a live experiment older than ``experiment_long_running_days`` → info "Long-Running A/B Test";
    * a live experiment whose observed candidate share since its stage began is more than 10 points off
      the configured share, over at least 100 requests → warning "A/B Traffic Mismatch".
    """
    now = time.time() if now is None else now
    db = db or StateDB.connect(settings)
    experiments = ExperimentStore(db).list()
    result = CheckResult(NAME, scopes=[NAME])
    counts = dict.fromkeys(("shadow", "running", "paused", "promoted", "rolled_back"), 0)
    for exp in experiments:
        counts[exp.status] = counts.get(exp.status, 0) + 1
    result.summary = {"experiments": len(experiments), **counts}
    horizon = now - ROLLBACK_LOOKBACK_DAYS * 86400
    if since is not None:
        horizon = min(horizon, since)
    long_running_s = settings.monitor.experiment_long_running_days * 86400
    for exp in experiments:
        if exp.status == "rolled_back" and (exp.ended_at or exp.updated_at) >= horizon:
            result.events.append(rollback_alert(exp))
        if not exp.live:
            continue
        age = now - exp.created_at
        if age > long_running_s:
            result.alerts.append(Alert(
                "info", "Long-Running A/B Test",
                f"Experiment {exp.experiment_id} has been running for {age / 86400:.1f} days",
                {"experiment_id": exp.experiment_id, "signature": exp.signature, "status": exp.status,
                 "running_days": round(age / 86400, 1), "stage_percent": exp.stage_percent,
                 "threshold_days": settings.monitor.experiment_long_running_days},
                condition=f"{NAME}/long_running/{exp.experiment_id}"))
        split = traffic_split(db, exp)
        if split.mismatch:
            result.alerts.append(Alert(
                "warning", "A/B Traffic Mismatch",
                f"Experiment {exp.experiment_id}: the candidate served {split.observed:.1%} of {split.total} requests "
                f"since its stage began, configured {split.configured:.0%}",
                {"experiment_id": exp.experiment_id, "signature": exp.signature, **split.to_dict(),
                 "tolerance_percent": SRM_TOLERANCE * 100},
                condition=f"{NAME}/traffic_mismatch/{exp.experiment_id}"))
    return result


def promotion_alert(exp: Experiment) -> Alert:
    """The one-time alert of a promotion (sent by the rollout controller when it happens)."""
    return Alert("info", "A/B Test Promoted",
                 f"Experiment {exp.experiment_id} promoted {exp.candidate_version} to production",
                 {"experiment_id": exp.experiment_id, "signature": exp.signature, "reason": exp.reason,
                  "baseline_version": exp.baseline_version, "candidate_version": exp.candidate_version},
                 condition=f"{NAME}/promoted/{exp.experiment_id}")


def rollback_alert(exp: Experiment) -> Alert:
    """The one-time alert of a rollback (seed 001's shape)."""
    return Alert("warning", "A/B Test Rolled Back", f"Experiment {exp.experiment_id} was rolled back",
                 {"experiment_id": exp.experiment_id, "signature": exp.signature, "reason": exp.reason,
                  "final_traffic_percent": exp.final_traffic_percent, "baseline_version": exp.baseline_version,
                  "candidate_version": exp.candidate_version, "rolled_back_at": iso(exp.ended_at or exp.updated_at)},
                 condition=f"{NAME}/rolled_back/{exp.experiment_id}")

