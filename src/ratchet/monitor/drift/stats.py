"""The statistics of drift: PSI of two label distributions, and a lower confidence bound on an excess share.

*Population stability index* of a live distribution ``q`` against a reference ``p`` over the
same bins: ``PSI = Σ (q_i − p_i) · ln(q_i / p_i)`` (the symmetric Kullback–Leibler divergence).
An empty bin would make it infinite, so both distributions are smoothed by adding half a count
to every bin (Jeffreys' prior): a label the reference never saw counts, but finitely. The usual
reading is < 0.1 stable, 0.1–0.25 moderate shift, > 0.25 significant shift. PSI has a noise
floor: with no shift at all its expectation is about ``(K − 1)(1/n + 1/m)`` for ``K`` bins and
``n``/``m`` samples (0.10 for 10 labels and 100 live calls), so a window is judged on PSI *and*
on a G-test of homogeneity (:func:`homogeneity_p_value`): a big PSI from a small window is noise.
Against *training labels*, a program's own confusions add a bias floor too (0.10 more for a
Banking77 program at 87.5 % accuracy), hence the default ``psi_threshold`` of 0.4 (docs/benchmarks.md).

*Excess share*: the live share of novel inputs against the share among held-out reference
inputs, as the one-sided lower confidence bound of the difference of two proportions (Newcombe's
hybrid score interval, method 10 of Newcombe 1998, built from Wilson score intervals). It
accounts for the uncertainty of both samples, and it stays sane near 0 and 1 where the Wald
interval does not.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from scipy import stats as scipy_stats

__all__ = ["SMOOTHING", "count_labels", "excess_lower_bound", "homogeneity_p_value", "psi", "psi_contributions",
           "wilson_interval"]

SMOOTHING = 0.5
"""Counts added to every bin before PSI is computed (Jeffreys' prior)."""


def count_labels(labels: Iterable[str], bins: Sequence[str], *, other: str = "(other)") -> dict[str, int]:
    """How many of ``labels`` fall in each bin; labels outside ``bins`` are counted under ``other`` (if any)."""
    counts = dict.fromkeys(bins, 0)
    for label in labels:
        key = label if label in counts else other
        counts[key] = counts.get(key, 0) + 1
    return counts


def _smoothed(counts: Sequence[float]) -> list[float]:
    total = sum(counts) + SMOOTHING * len(counts)
    return [(c + SMOOTHING) / total for c in counts]


def psi_contributions(reference: Mapping[str, int], live: Mapping[str, int]) -> dict[str, float]:
    """Each bin's term of the PSI (over the union of both mappings' bins); they add up to :func:`psi`."""
    bins = list(dict.fromkeys([*reference, *live]))
    if not bins or not sum(reference.values()) or not sum(live.values()):
        return {}
    p = _smoothed([reference.get(b, 0) for b in bins])
    q = _smoothed([live.get(b, 0) for b in bins])
    return {b: (qi - pi) * math.log(qi / pi) for b, pi, qi in zip(bins, p, q, strict=True)}


def psi(reference: Mapping[str, int], live: Mapping[str, int]) -> float:
    """Population stability index of the ``live`` label counts against the ``reference`` counts (smoothed)."""
    return sum(psi_contributions(reference, live).values())


def homogeneity_p_value(reference: Mapping[str, int], live: Mapping[str, int]) -> float:
    """p-value of a G-test that both counts come from one distribution (bins empty in both are dropped)."""
    bins = [b for b in dict.fromkeys([*reference, *live]) if reference.get(b, 0) + live.get(b, 0) > 0]
    if len(bins) < 2 or not sum(reference.values()) or not sum(live.values()):
        return 1.0
    table = [[reference.get(b, 0) for b in bins], [live.get(b, 0) for b in bins]]
    result = scipy_stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    return float(result.pvalue)


def wilson_interval(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion at normal quantile ``z`` (``(0, 1)`` when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def excess_lower_bound(live: int, live_n: int, reference: int, reference_n: int, alpha: float) -> float:
    """One-sided ``1 - alpha`` lower bound of ``live/live_n − reference/reference_n`` (Newcombe's hybrid score).

    >>> round(excess_lower_bound(40, 100, 10, 100, 0.05), 3)
    0.202
    """
    if live_n <= 0 or reference_n <= 0:
        raise ValueError("both samples must be non-empty")
    z = float(scipy_stats.norm.ppf(1 - alpha))
    p1, p2 = live / live_n, reference / reference_n
    low1, _ = wilson_interval(live, live_n, z)
    _, high2 = wilson_interval(reference, reference_n, z)
    return (p1 - p2) - math.sqrt((p1 - low1) ** 2 + (high2 - p2) ** 2)
