"""Anytime-valid rollback tests: the controller may look after every request without inflating false alarms.

The latency, quality and agreement guardrails use the normal-mixture confidence sequence (mSPRT,
Johari et al.; Robbins' mixture): for an estimate θ̂ with variance V and mixing scale τ,

    h = sqrt( V (V + τ²) / τ² · [ ln((V + τ²) / V) + 2 ln(1/α) ] )

and θ̂ ± h covers the true θ at every sample size simultaneously with probability ≥ 1 − α.

The error-rate guardrail (:mod:`ratchet.rollout.onesided`) compares the arms' rates on the
variance-stabilised angle scale ``asin(sqrt(p))``, where the difference θ̂ of the two arms has the known
variance ``V = 1/(4 n_c) + 1/(4 n_b)`` whatever the rates are, with a one-sided (half-normal) mixture: only a
rise can roll back. It rejects "the candidate's rate ≤ the baseline's" when
``θ̂ ≥ b = u · sqrt(V (V + τ²)) / τ`` with ``u²/2 + ln Φ(u) = ln(1/(2α)) + ½ ln(1 + τ²/V)``, and τ matched to
the threshold (the angle of a threshold-sized rise over a 2 % baseline). ``θ̂ ∓ b`` are anytime-valid lower and
upper bounds (level α each), shown as rate differences.

A trigger fires only when the regression is both statistically real and may be larger than the product
threshold: ``LCB(Δ) > 0 and UCB(Δ) > threshold`` (error rate, latency) or ``UCB(quality) < floor``
(quality; likewise agreement in shadow). See docs/benchmarks.md (issue 6 and 17.3) for the simulations
behind these choices.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ratchet.rollout.onesided import error_rate_tau, rate_difference_bounds

__all__ = [
    "ERROR_RATE_TAU",
    "LATENCY_TAU_S",
    "QUALITY_TAU",
    "Check",
    "agreement_check",
    "catastrophe_check",
    "cs_halfwidth",
    "error_rate_check",
    "latency_check",
    "quality_check",
]


ERROR_RATE_TAU = 0.05
"""Mixing scale of each arm's own error-rate sequence in an experiment's history (the error-rate *trigger*
compares the arms with :mod:`ratchet.rollout.onesided`)."""
LATENCY_TAU_S = 0.5
"""Mixing scale of the latency sequences, in seconds."""
QUALITY_TAU = 0.1
"""Mixing scale of the quality (0–1 feedback score) and agreement sequences."""


def cs_halfwidth(variance: float, tau: float, alpha: float) -> float:
    """Half-width of the normal-mixture confidence sequence for an estimate with ``variance``."""
    v = max(variance, 1e-12)
    t2 = tau * tau
    return math.sqrt(v * (v + t2) / t2 * (math.log((v + t2) / v) + 2 * math.log(1 / alpha)))


@dataclass(frozen=True)
class Check:
    """One guardrail's verdict, with the numbers behind it."""

    trigger: str  # error_rate | latency | quality | catastrophe | agreement | canary
    fired: bool
    estimate: float
    low: float
    high: float
    threshold: float
    n_candidate: int
    n_baseline: int
    message: str

    def to_dict(self) -> dict[str, object]:
        return {
            "trigger": self.trigger, "fired": self.fired, "estimate": round(self.estimate, 6),
            "low": round(self.low, 6), "high": round(self.high, 6), "threshold": self.threshold,
            "n_candidate": self.n_candidate, "n_baseline": self.n_baseline, "message": self.message,
        }


def error_rate_check(errors_c: int, n_c: int, errors_b: int, n_b: int, *, threshold: float = 0.05,
                     tau: float | None = None, alpha: float = 0.05, min_n: int = 20) -> Check:
    """Candidate error rate minus baseline's: fires when the rise is real (one-sided anytime-valid lower bound
    > 0) and may exceed ``threshold`` (upper bound > threshold). ``tau`` (radians on the angle scale) defaults to
    :func:`~ratchet.rollout.onesided.error_rate_tau` of the threshold."""
    if n_c < min_n or n_b < min_n:
        return Check("error_rate", False, 0.0, -1.0, 1.0, threshold, n_c, n_b,
                     f"waiting for data ({n_c} candidate, {n_b} baseline requests; need {min_n} each)")
    rate_c, rate_b = errors_c / n_c, errors_b / n_b
    delta = rate_c - rate_b
    low, high, real = rate_difference_bounds(errors_c, n_c, errors_b, n_b,
                                             tau=error_rate_tau(threshold) if tau is None else tau, alpha=alpha)
    fired = real and high > threshold
    message = (f"error rate {rate_c:.1%} vs baseline {rate_b:.1%}: {delta * 100:+.1f} points "
               f"(anytime-valid {1 - 2 * alpha:.0%} interval {low * 100:+.1f} to {high * 100:+.1f}; "
               f"trigger: worse by more than {threshold * 100:.0f} points)")
    return Check("error_rate", fired, delta, low, high, threshold, n_c, n_b, message)


def latency_check(mean_c: float, var_c: float, n_c: int, mean_b: float, var_b: float, n_b: int, *,
                  threshold_s: float = 0.5, tau: float = LATENCY_TAU_S, alpha: float = 0.05, min_n: int = 20) -> Check:
    """Candidate mean latency minus baseline's (seconds): fires when real and above ``threshold_s``."""
    if n_c < min_n or n_b < min_n:
        return Check("latency", False, 0.0, -math.inf, math.inf, threshold_s, n_c, n_b,
                     f"waiting for data ({n_c} candidate, {n_b} baseline requests; need {min_n} each)")
    delta = mean_c - mean_b
    h = cs_halfwidth(var_c / n_c + var_b / n_b, tau, alpha)
    fired = delta - h > 0 and delta + h > threshold_s
    message = (f"mean latency {mean_c * 1000:.0f} ms vs baseline {mean_b * 1000:.0f} ms: {delta * 1000:+.0f} ms "
               f"(interval {(delta - h) * 1000:+.0f} to {(delta + h) * 1000:+.0f} ms; trigger: worse by more than "
               f"{threshold_s * 1000:.0f} ms)")
    return Check("latency", fired, delta, delta - h, delta + h, threshold_s, n_c, n_b, message)


def quality_check(mean_c: float | None, var_c: float | None, n_c: int, mean_b: float | None = None,
                  var_b: float | None = None, n_b: int = 0, *, floor: float = 0.70, tau: float = QUALITY_TAU,
                  alpha: float = 0.05, min_n: int = 20) -> Check:
    """Candidate mean quality (0–1 feedback scores) against the floor and, when it has scores, the baseline."""
    if mean_c is None or n_c < min_n:
        return Check("quality", False, mean_c or 0.0, 0.0, 1.0, floor, n_c, n_b,
                     f"waiting for feedback ({n_c} candidate scores; need {min_n})")
    h = cs_halfwidth((var_c or 0.0) / n_c + 1e-4 / n_c, tau, alpha)
    below = mean_c + h < floor
    worse, diff_note = False, ""
    if mean_b is not None and n_b >= min_n:
        diff = mean_c - mean_b
        hd = cs_halfwidth((var_c or 0.0) / n_c + (var_b or 0.0) / n_b + 1e-4 / min(n_c, n_b), tau, alpha)
        worse = diff + hd < 0 and mean_c - h < floor
        diff_note = f"; vs baseline {mean_b:.3f}: {diff:+.3f} (interval {diff - hd:+.3f} to {diff + hd:+.3f})"
    message = (f"candidate quality {mean_c:.3f} (interval {mean_c - h:.3f} to {mean_c + h:.3f}, n={n_c}){diff_note}; "
               f"trigger: below {floor:.2f}")
    return Check("quality", below or worse, mean_c, mean_c - h, mean_c + h, floor, n_c, n_b, message)


def catastrophe_check(errors_c: int, n_c: int, *, window: int = 20) -> Check:
    """A hard guard that needs no statistics: the candidate fails most of its first ``window`` requests."""
    fired = errors_c > window // 2 and (n_c <= window or errors_c / n_c > 0.5)
    rate = errors_c / n_c if n_c else 0.0
    message = (f"candidate failed {errors_c} of {n_c} requests ({rate:.0%}); "
               f"trigger: most of its first {window} requests")
    return Check("catastrophe", fired, rate, rate, rate, 0.5, n_c, 0, message)


def agreement_check(agreed: int, compared: int, *, min_agreement: float = 0.3, tau: float = QUALITY_TAU,
                    alpha: float = 0.05, min_n: int = 20) -> Check:
    """How often a candidate in shadow answers what production answers: fires when even the upper end of the
    anytime-valid interval is below ``min_agreement`` (it disagrees far more than a better program would)."""
    if compared < min_n:
        return Check("agreement", False, 0.0, 0.0, 1.0, min_agreement, compared, compared,
                     f"waiting for shadow calls both versions answered ({compared}; need {min_n})")
    rate = agreed / compared
    p = (agreed + 1) / (compared + 2)  # a variance floor at 0 % and 100 %
    h = cs_halfwidth(p * (1 - p) / compared, tau, alpha)
    fired = rate + h < min_agreement
    message = (f"agrees with production on {rate:.0%} of {compared} shadow calls (anytime-valid {1 - alpha:.0%} "
               f"interval {max(0.0, rate - h):.0%} to {min(1.0, rate + h):.0%}; trigger: below {min_agreement:.0%})")
    return Check("agreement", fired, rate, rate - h, rate + h, min_agreement, compared, compared, message)
