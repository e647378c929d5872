"""Degradation: production's newest canary run against its own trailing runs, probe by probe.

The reference of each probe is its mean score over production's previous ``trailing_runs``
runs (same version, same probe set; at least :data:`MIN_TRAILING`). The newest run is compared
with those means by :func:`~ratchet.evaluation.paired.compare_paired` and judged like the rollout
trigger (:func:`ratchet.rollout.canary.judge_drop`): degraded when the drop is larger than
``max_production_drop`` *and* the two-sided ``1 − alpha`` paired bootstrap interval lies below zero
*and* the paired test rejects "no difference" at ``alpha`` — an interval, never a point estimate.
What it catches: the model behind the program changed (a provider's silent update, another
quantisation), the serving stack broke answers (errors and parse failures score 0), a probe
file's labels moved — with the same prompt and the same probes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ratchet.config.settings import CanarySettings, Settings
from ratchet.errors import RatchetError
from ratchet.evaluation.paired import compare_paired
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramRegistry
from ratchet.programs.versions import VersionStore
from ratchet.rollout.canary import judge_drop
from ratchet.store.canaries import CanaryRun, canary_history
from ratchet.store.db import StateDB

__all__ = ["MIN_TRAILING", "Degradation", "assess_degradation", "production_degradation"]

MIN_TRAILING = 2
"""Earlier runs a trailing baseline needs."""


@dataclass(frozen=True)
class Degradation:
    """One version's newest canary run against its trailing runs (or why there is no verdict)."""

    signature: str
    version: str
    status: str  # "ok", "degraded" or "not_enough_data"
    reason: str | None = None
    latest: CanaryRun | None = None
    trailing_runs: int = 0
    n: int = 0  # probes compared
    latest_score: float | None = None  # on the compared probes
    baseline_score: float | None = None  # mean of the per-probe trailing means
    ci_low: float | None = None  # of latest − baseline
    ci_high: float | None = None
    p_value: float | None = None
    test: str | None = None
    threshold: float = 0.05
    alpha: float = 0.05

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    @property
    def judged(self) -> bool:
        return self.status != "not_enough_data"

    @property
    def drop(self) -> float | None:
        """How far the newest run is below the trailing baseline (score points; negative: above it)."""
        if self.latest_score is None or self.baseline_score is None:
            return None
        return self.baseline_score - self.latest_score

    @property
    def message(self) -> str:
        if not self.judged:
            return f"{self.signature} {self.version}: {self.reason}"
        assert self.drop is not None and self.ci_low is not None and self.ci_high is not None
        verdict = "dropped" if self.degraded else "held"
        return (f"{self.signature}: production {self.version} {verdict} on its canary probes: "
                f"{self.latest_score:.3f} in the newest run against {self.baseline_score:.3f} over its previous "
                f"{self.trailing_runs} runs, {-self.drop * 100:+.1f} points on {self.n} probes ({1 - self.alpha:.0%} "
                f"interval {self.ci_low * 100:+.1f} to {self.ci_high * 100:+.1f}, {self.test} p = {self.p_value:.2g}; "
                f"threshold: a drop of more than {self.threshold * 100:g} points)")

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else round(value, 4)

        return {"signature": self.signature, "version": self.version, "status": self.status, "reason": self.reason,
                "degraded": self.degraded, "trailing_runs": self.trailing_runs, "n": self.n,
                "latest_score": rounded(self.latest_score), "baseline_score": rounded(self.baseline_score),
                "drop": rounded(self.drop), "ci_low": rounded(self.ci_low), "ci_high": rounded(self.ci_high),
                "p_value": None if self.p_value is None else round(self.p_value, 6), "test": self.test,
                "threshold": self.threshold, "alpha": self.alpha,
                "latest_run": self.latest.to_dict() if self.latest else None,
                "message": self.message}


def production_degradation(db: StateDB, signature: str, version: str, canary: CanarySettings) -> Degradation:
    """Whether ``version``'s newest canary run dropped against its previous runs on the same probes."""
    common = {"signature": signature, "version": version, "threshold": canary.max_production_drop,
              "alpha": canary.alpha}
    newest = canary_history(db, signature, version, limit=1)
    if not newest:
        return Degradation(status="not_enough_data", reason="no canary run yet", **common)
    latest = newest[0]
    trailing = canary_history(db, signature, version, limit=canary.trailing_runs + 1,
                              probe_set=latest.probe_set)[1:]
    if len(trailing) < MIN_TRAILING:
        return Degradation(status="not_enough_data", latest=latest, trailing_runs=len(trailing), reason=(
            f"{len(trailing)} earlier canary run(s) on these probes (needs {MIN_TRAILING})"), **common)
    sums: dict[str, list[float]] = {}
    for run in trailing:
        for probe, score in run.scores.items():
            sums.setdefault(probe, []).append(score)
    probes = sorted(set(latest.scores) & set(sums))
    if len(probes) < canary.min_probes:
        return Degradation(status="not_enough_data", latest=latest, trailing_runs=len(trailing), n=len(probes),
                           reason=f"{len(probes)} probes scored in the newest and earlier runs "
                                  f"(needs {canary.min_probes})", **common)
    reference = [sum(sums[p]) / len(sums[p]) for p in probes]
    comparison = compare_paired(reference, [latest.scores[p] for p in probes], confidence=1 - canary.alpha)
    dropped = judge_drop(comparison, canary.max_production_drop, canary.alpha)
    return Degradation(status="degraded" if dropped else "ok", latest=latest, trailing_runs=len(trailing),
                       n=comparison.n, latest_score=comparison.candidate_mean,
                       baseline_score=comparison.baseline_mean, ci_low=comparison.ci_low,
                       ci_high=comparison.ci_high, p_value=comparison.p_value, test=comparison.test, **common)


def assess_degradation(settings: Settings, registry: ProgramRegistry, *, db: StateDB) -> dict[str, Degradation]:
    """Every registered signature's production version against its own trailing canary runs."""
    canary = settings.monitor.canary
    pointers = ProductionPointers(db, VersionStore(settings.home_dir, db))
    found: dict[str, Degradation] = {}
    for spec in registry:
        try:
            version = pointers.get(spec.name)
        except (RatchetError, SQLAlchemyError) as exc:
            found[spec.name] = Degradation(spec.name, "?", "not_enough_data", f"production pointer unreadable: {exc}",
                                           threshold=canary.max_production_drop, alpha=canary.alpha)
            continue
        found[spec.name] = production_degradation(db, spec.name, version, canary)
    return found
