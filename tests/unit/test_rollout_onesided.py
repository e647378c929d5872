"""The error-rate trigger's one-sided anytime-valid test (ratchet.rollout.onesided, issue 17.3)."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from ratchet.rollout.onesided import angle, error_rate_tau, one_sided_boundary, rate_difference_bounds
from ratchet.rollout.sequential import cs_halfwidth, error_rate_check

ALPHA = 0.05
TAU = error_rate_tau(0.05)


def _log_mixture(estimate: float, variance: float, tau: float) -> float:
    """ln Λ of the one-sided half-normal mixture, straight from its definition (numerical integral)."""
    thetas = np.linspace(0.0, 12 * tau, 200_001)
    density = 2 * np.exp(-thetas ** 2 / (2 * tau * tau)) / (tau * math.sqrt(2 * math.pi))
    lr = np.exp(thetas * estimate / variance - thetas ** 2 / (2 * variance))
    return math.log(np.trapezoid(lr * density, thetas))


@pytest.mark.parametrize("variance", [1e-2, 1e-3, 2e-4])
def test_the_boundary_is_where_the_mixture_reaches_one_over_alpha(variance: float) -> None:
    b = one_sided_boundary(variance, TAU, ALPHA)
    assert _log_mixture(b, variance, TAU) == pytest.approx(math.log(1 / ALPHA), abs=1e-4)
    # one-sided: narrower than the two-sided sequence at alpha, but wider than a two-sided one at 2·alpha
    assert cs_halfwidth(variance, TAU, 2 * ALPHA) < b < cs_halfwidth(variance, TAU, ALPHA)


def test_bad_alpha_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="alpha"):
        one_sided_boundary(1e-3, TAU, 0.5)


def test_the_mixing_scale_follows_the_threshold() -> None:
    assert error_rate_tau(0.05) == pytest.approx(math.asin(math.sqrt(0.07)) - math.asin(math.sqrt(0.02)))
    assert error_rate_tau(0.01) < error_rate_tau(0.05) < error_rate_tau(0.20)


def test_bounds_hold_the_estimate_and_stay_within_possible_rates() -> None:
    for xc, nc, xb, nb in [(14, 200, 27, 1350), (0, 20, 0, 180), (20, 20, 0, 180), (0, 20, 180, 180)]:
        low, high, _ = rate_difference_bounds(xc, nc, xb, nb, tau=TAU, alpha=ALPHA)
        shrunk = math.sin(angle(xc, nc)) ** 2 - math.sin(angle(xb, nb)) ** 2  # Anscombe's rates
        assert -1.0 <= low < shrunk < high <= 1.0


def test_a_real_rise_above_the_threshold_fires_and_a_real_small_one_does_not() -> None:
    # 7 % vs 2 % at the end of the 25 % stage: the rule before 17.3 held here (its LCB was below 0)
    assert error_rate_check(18, 250, 27, 1350, alpha=ALPHA / 3).fired
    # 2.5 % vs 2 % on huge counts: real (LCB > 0) but surely below 5 points (UCB < 5): no rollback
    small = error_rate_check(2500, 100_000, 2000, 100_000, alpha=ALPHA / 3)
    assert small.low > 0 and small.high < 0.05 and not small.fired
    # a better candidate never fires, however clear
    assert not error_rate_check(0, 2000, 400, 2000, alpha=ALPHA / 3).fired
    assert "anytime-valid 97% interval" in error_rate_check(18, 250, 27, 1350, alpha=ALPHA / 3).message


def _ever_fires(fires: Callable[[int, int, int, int], bool], *, p_c: float, p_b: float, runs: int, length: int,
                seed: int) -> float:
    """Share of simulated rollouts in which ``fires`` is ever true when checked after *every* request; the
    candidate's share ramps 10 → 25 → 50 % as the controller's stages do."""
    rng = np.random.default_rng(seed)
    share = np.repeat([0.10, 0.25, 0.50], [length // 4, length // 4, length - 2 * (length // 4)])
    hits = 0
    for _ in range(runs):
        cand = rng.random(length) < share
        err = rng.random(length) < np.where(cand, p_c, p_b)
        nc, xc = np.cumsum(cand), np.cumsum(cand & err)
        nb, xb = np.cumsum(~cand), np.cumsum(~cand & err)
        start = int(np.argmax((nc >= 20) & (nb >= 20)))
        hits += any(fires(int(xc[t]), int(nc[t]), int(xb[t]), int(nb[t])) for t in range(start, length))
    return hits / runs


def _margin(runs: int) -> float:
    return ALPHA + 2.33 * math.sqrt(ALPHA * (1 - ALPHA) / runs)  # α plus a one-sided 99 % sampling margin


@pytest.mark.parametrize(("p", "seed"), [(0.02, 1), (0.20, 2)])
def test_no_more_false_alarms_than_alpha_under_continuous_monitoring(p: float, seed: int) -> None:
    runs = 300

    def ours(xc: int, nc: int, xb: int, nb: int) -> bool:
        return rate_difference_bounds(xc, nc, xb, nb, tau=TAU, alpha=ALPHA)[2]

    def fixed_sample_z(xc: int, nc: int, xb: int, nb: int) -> bool:  # valid once, not at every look
        return angle(xc, nc) - angle(xb, nb) > 1.645 * math.sqrt(1 / (4 * nc) + 1 / (4 * nb))

    assert _ever_fires(ours, p_c=p, p_b=p, runs=runs, length=1600, seed=seed) <= _margin(runs)
    # the harness can tell: the same statistic with a fixed-sample boundary, checked as often, fails it
    assert _ever_fires(fixed_sample_z, p_c=p, p_b=p, runs=runs, length=1600, seed=seed) > 2 * _margin(runs)


def test_the_lower_bound_covers_a_true_rise_under_continuous_monitoring() -> None:
    runs, p_c, p_b = 200, 0.07, 0.02

    def above_truth(xc: int, nc: int, xb: int, nb: int) -> bool:
        return rate_difference_bounds(xc, nc, xb, nb, tau=TAU, alpha=ALPHA)[0] > p_c - p_b

    assert _ever_fires(above_truth, p_c=p_c, p_b=p_b, runs=runs, length=1600, seed=3) <= _margin(runs)
