"""The error-rate trigger's test: a one-sided normal mixture on the variance-stabilised (arcsine) scale.

A rate ``p`` is compared on the angle scale ``a(p) = asin(sqrt(p))``, estimated from ``x`` errors in ``n``
requests by Anscombe's ``asin(sqrt((x + 3/8) / (n + 3/4)))``. Its variance is ``1 / (4 n)`` whatever ``p`` is,
so the difference of two arms' angles

    θ̂ = a_c − a_b,   V = 1/(4 n_c) + 1/(4 n_b)

needs no plug-in variance (the Wald variance of ``p̂_c − p̂_b`` uses the candidate's own, inflated, rate and
is wide exactly when the candidate regressed; a pooled null variance is too narrow for the right tail of a
few rare errors and fires falsely: see docs/benchmarks.md, 17.3). Only regressions matter for a rollback,
so the mixture is one-sided: θ ~ half-normal(τ) on θ > 0, and

    Λ = 2 · sqrt(V / (V + τ²)) · exp(θ̂² τ² / (2 V (V + τ²))) · Φ(θ̂ τ / sqrt(V (V + τ²)))

is a test supermartingale for H0 "θ ≤ 0" (equivalently ``p_c ≤ p_b``) when θ̂ moves as a Gaussian random walk,
so by Ville's inequality ``P(Λ ever reaches 1/α) ≤ α`` however often it is checked. The angle keeps that
approximation good down to a few errors (its tails stay Gaussian where the rate difference's are skewed);
tests/unit/test_rollout_onesided.py checks the false-alarm rate by Monte Carlo with a check after every request.

``Λ ≥ 1/α`` exactly when ``θ̂ ≥ b`` with

    b = u · sqrt(V + τ²) · sqrt(V) / τ,   u > 0 solving  u²/2 + ln Φ(u) = ln(1/(2α)) + ½ ln(1 + τ²/V).

Because V does not depend on θ, testing "θ ≤ θ0" is the same test shifted by θ0: ``θ̂ − b`` is an
anytime-valid lower bound for θ at level α and ``θ̂ + b`` (the mirror test) an upper one, the two together a
``1 − 2α`` interval. The bounds are shown as rate differences: ``sin²(a_b + θ) − sin²(a_b)``.
"""

from __future__ import annotations

import math

__all__ = ["RATE_TAU_REFERENCE", "angle", "error_rate_tau", "one_sided_boundary", "rate_difference_bounds"]

RATE_TAU_REFERENCE = 0.02
"""The baseline error rate at which :func:`error_rate_tau` matches the mixing scale to the threshold."""


def angle(errors: int, n: int) -> float:
    """Anscombe's variance-stabilised angle of ``errors`` in ``n`` (variance ≈ 1 / (4 n) for every rate)."""
    return math.asin(math.sqrt((errors + 0.375) / (n + 0.75)))


def error_rate_tau(threshold: float) -> float:
    """The mixing scale (radians) that puts the test's power where a ``threshold``-sized rise over a
    :data:`RATE_TAU_REFERENCE` baseline lies: 0.126 for 5 points."""
    top = min(1.0, RATE_TAU_REFERENCE + max(threshold, 0.0))
    return max(math.asin(math.sqrt(top)) - math.asin(math.sqrt(RATE_TAU_REFERENCE)), 0.01)


def _log_ndtr(u: float) -> float:
    return math.log(0.5 * math.erfc(-u / math.sqrt(2)))


def one_sided_boundary(variance: float, tau: float, alpha: float) -> float:
    """The smallest estimate ``b`` at which the one-sided half-normal(``tau``) mixture reaches ``1/alpha``."""
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must be in (0, 0.5), got {alpha}")
    v, t2 = max(variance, 1e-12), tau * tau
    target = math.log(1 / (2 * alpha)) + 0.5 * math.log1p(t2 / v)
    u = math.sqrt(2 * target)  # u²/2 + ln Φ(u) is convex and increasing on u > 0: Newton converges
    for _ in range(50):
        f = u * u / 2 + _log_ndtr(u) - target
        step = f / (u + math.exp(-u * u / 2 - _log_ndtr(u)) / math.sqrt(2 * math.pi))
        u -= step
        if abs(step) < 1e-12:
            break
    return u * math.sqrt((v + t2) * v) / tau


def rate_difference_bounds(errors_c: int, n_c: int, errors_b: int, n_b: int, *, tau: float,
                           alpha: float) -> tuple[float, float, bool]:
    """Anytime-valid lower and upper bounds (each at level ``alpha``) for candidate rate minus baseline rate,
    and whether H0 "the candidate's rate is at most the baseline's" is rejected (the lower angle bound > 0)."""
    a_c, a_b = angle(errors_c, n_c), angle(errors_b, n_b)
    b = one_sided_boundary(1 / (4 * n_c) + 1 / (4 * n_b), tau, alpha)
    theta = a_c - a_b
    base = math.sin(a_b) ** 2

    def to_rate(t: float) -> float:
        return math.sin(min(max(a_b + t, 0.0), math.pi / 2)) ** 2 - base

    return to_rate(theta - b), to_rate(theta + b), theta - b > 0
