"""Paired comparison of two programs scored on the same examples.

Both programs answer every example; the per-example differences carry the evidence.
Reported: both means, wins/losses/ties, the mean difference with a paired bootstrap
interval, a p-value (exact McNemar test when every score is 0 or 1, else a paired
sign-flip permutation test) and the relative improvement.

It sits low (``evaluation``) because several layers judge paired scores: the optimizer's
deploy decision (:mod:`ratchet.optimize.stats`), the rollout's canary trigger and the
monitor's canary degradation signal.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

__all__ = ["PairedComparison", "compare_paired"]


@dataclass(frozen=True)
class PairedComparison:
    """Baseline vs candidate on the same examples (scores in metric units, usually 0–1)."""

    n: int
    baseline_mean: float
    candidate_mean: float
    mean_difference: float
    ci_low: float
    ci_high: float
    confidence: float
    p_value: float
    test: str  # "mcnemar-exact" or "sign-flip-permutation"
    wins: int  # candidate better
    losses: int  # candidate worse
    ties: int
    relative_improvement_percent: float | None  # None when the baseline scores 0

    @property
    def interval_excludes_zero(self) -> bool:
        return self.ci_low > 0 or self.ci_high < 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["interval_excludes_zero"] = self.interval_excludes_zero
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in out.items()}


def compare_paired(baseline: Sequence[float], candidate: Sequence[float], *, confidence: float = 0.95,
                   resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    """Compare per-example scores of two programs on the same examples (same order)."""
    if len(baseline) != len(candidate):
        raise ValueError(f"paired scores need equal lengths, got {len(baseline)} and {len(candidate)}")
    if not baseline:
        raise ValueError("no examples to compare")
    base = np.asarray(baseline, dtype=float)
    cand = np.asarray(candidate, dtype=float)
    diff = cand - base
    n = len(diff)
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, n, size=(resamples, n))].mean(axis=1)
    alpha = 1.0 - confidence
    ci_low, ci_high = (float(x) for x in np.quantile(boot, [alpha / 2, 1 - alpha / 2]))
    binary = bool(np.all(np.isin(base, (0.0, 1.0))) and np.all(np.isin(cand, (0.0, 1.0))))
    wins, losses = int(np.sum(diff > 0)), int(np.sum(diff < 0))
    if binary:
        test, p_value = "mcnemar-exact", _mcnemar_exact(wins, losses)
    else:
        test, p_value = "sign-flip-permutation", _sign_flip_p(diff, rng, resamples)
    base_mean, cand_mean = float(base.mean()), float(cand.mean())
    relative = (cand_mean - base_mean) / base_mean * 100 if base_mean > 0 else None
    return PairedComparison(
        n=n, baseline_mean=base_mean, candidate_mean=cand_mean, mean_difference=float(diff.mean()),
        ci_low=ci_low, ci_high=ci_high, confidence=confidence, p_value=p_value, test=test, wins=wins,
        losses=losses, ties=n - wins - losses, relative_improvement_percent=relative,
    )


def _mcnemar_exact(wins: int, losses: int) -> float:
    """Two-sided exact McNemar: the discordant pairs are Binomial(wins + losses, 1/2) under no difference."""
    discordant = wins + losses
    if discordant == 0:
        return 1.0
    return float(min(1.0, scipy_stats.binomtest(wins, discordant, 0.5).pvalue))


def _sign_flip_p(diff: np.ndarray, rng: np.random.Generator, resamples: int) -> float:
    """Two-sided paired permutation test: flip the sign of each difference at random."""
    observed = abs(diff.mean())
    if observed == 0:
        return 1.0
    signs = rng.choice((-1.0, 1.0), size=(resamples, len(diff)))
    flipped = np.abs((signs * diff).mean(axis=1))
    return float((np.sum(flipped >= observed - 1e-12) + 1) / (resamples + 1))
