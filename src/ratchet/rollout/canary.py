"""The canary rollback trigger: a live candidate scores worse than its baseline on the same probes.

Canary runs (:mod:`ratchet.monitor.canary`) score a live experiment's baseline and candidate
in one pass, on one fixed probe set, so each probe is a pair. :func:`canary_check` compares
them with :func:`~ratchet.evaluation.paired.compare_paired` (exact McNemar test for 0/1
scores, sign-flip permutation test otherwise, and a paired bootstrap interval) and fires when
the drop is

* larger than the product threshold — ``baseline − candidate > max_drop`` (score points), and
* real — the two-sided ``1 − alpha`` interval of ``candidate − baseline`` lies below zero *and*
  the paired test rejects "no difference" at ``alpha`` (the bootstrap interval alone is too
  eager with a handful of discordant probes; the exact test is not),

on at least ``min_probes`` probes that both answered. Like :mod:`ratchet.rollout.sequential` it
returns a :class:`~ratchet.rollout.sequential.Check` (trigger ``"canary"``), so the controller
treats it as one more guardrail. :func:`experiment_canary_check` reads the newest such pass of an
experiment from the state database.
"""

from __future__ import annotations

from ratchet.config.settings import CanarySettings
from ratchet.evaluation.paired import PairedComparison, compare_paired
from ratchet.rollout.experiments import Experiment
from ratchet.rollout.sequential import Check
from ratchet.store.canaries import CanaryRun, latest_pass
from ratchet.store.db import StateDB

__all__ = ["TRIGGER", "canary_check", "experiment_canary_check", "judge_drop", "paired_scores"]

TRIGGER = "canary"


def paired_scores(reference: dict[str, float], new: dict[str, float]) -> tuple[list[float], list[float]]:
    """The scores of the probes both maps hold, in one (sorted) order: ``(reference, new)``."""
    common = sorted(reference.keys() & new.keys())
    return [reference[k] for k in common], [new[k] for k in common]


def judge_drop(comparison: PairedComparison, max_drop: float, alpha: float) -> bool:
    """True when ``new`` is below ``reference`` by more than ``max_drop``, with the interval and the test agreeing."""
    return (-comparison.mean_difference > max_drop and comparison.ci_high < 0
            and comparison.p_value < alpha)


def canary_check(baseline: CanaryRun | None, candidate: CanaryRun | None, *, max_drop: float = 0.05,
                 alpha: float = 0.05, min_probes: int = 20) -> Check:
    """Whether to roll back, from the baseline's and the candidate's runs of one pass (pure: no I/O)."""
    if baseline is None or candidate is None:
        return Check(TRIGGER, False, 0.0, -1.0, 1.0, max_drop, 0, 0,
                     "waiting for a canary run that scores both the baseline and the candidate")
    if baseline.probe_set != candidate.probe_set:
        return Check(TRIGGER, False, 0.0, -1.0, 1.0, max_drop, candidate.n, baseline.n,
                     "waiting for a canary run of both versions on the same probe set")
    base, cand = paired_scores(baseline.scores, candidate.scores)
    if len(base) < min_probes:
        return Check(TRIGGER, False, 0.0, -1.0, 1.0, max_drop, len(cand), len(base),
                     f"waiting for canary probes ({len(base)} scored by both versions; need {min_probes})")
    comparison = compare_paired(base, cand, confidence=1 - alpha)
    fired = judge_drop(comparison, max_drop, alpha)
    diff = comparison.mean_difference
    message = (f"canary score {comparison.candidate_mean:.3f} vs baseline {comparison.baseline_mean:.3f} on the same "
               f"{comparison.n} probes: {diff * 100:+.1f} points ({1 - alpha:.0%} interval "
               f"{comparison.ci_low * 100:+.1f} to {comparison.ci_high * 100:+.1f}; {comparison.losses} probes worse, "
               f"{comparison.wins} better, {comparison.test} p = {comparison.p_value:.2g}; trigger: worse by more "
               f"than {max_drop * 100:g} points)")
    return Check(TRIGGER, fired, diff, comparison.ci_low, comparison.ci_high, max_drop, comparison.n,
                 comparison.n, message)


def experiment_canary_check(db: StateDB, experiment: Experiment, canary: CanarySettings) -> Check:
    """:func:`canary_check` on the newest pass since the experiment started that scored both of its versions
    (never fires while canaries are off)."""
    if not canary.enabled:
        return Check(TRIGGER, False, 0.0, -1.0, 1.0, canary.max_candidate_drop, 0, 0,
                     "canaries are off (monitor.canary.enabled = false)")
    found = latest_pass(db, experiment.signature, experiment.baseline_version, experiment.candidate_version,
                        since=experiment.created_at)
    baseline, candidate = found if found is not None else (None, None)
    return canary_check(baseline, candidate, max_drop=canary.max_candidate_drop, alpha=canary.alpha,
                        min_probes=canary.min_probes)
