"""Ratchet's rollout controller, its rule before issue 17.3 and the seed's naive rule on the same streams.

    python benchmarks/rollout_sim.py [--runs 1000] [--rate 10] [--seed 0]

Each run replays one random request stream (common random numbers: the same
per-request draws decide arm, error, latency and feedback for every controller)
through stages 10/25/50/75/100 % with ≥ 60 min and ≥ 100 candidate requests per
stage, ``--rate`` requests per minute, a check every minute. Ratchet decides with
``ratchet.rollout.decide`` (anytime-valid tests + catastrophe guard); "ratchet
before 17.3" is the same controller with the error-rate trigger it had before
(a two-sided Wald-variance confidence sequence, :func:`wald_error_rate_check`);
the naive rule compares raw deltas against the thresholds (error +5 points,
latency +500 ms, quality < 0.70) at every check once the stage has 100 candidate
requests. Reports false rollbacks with no regression, detection rates, median
requests until a rollback (and the new/before ratio) and minutes to full rollout
of a good candidate. Results go to benchmarks/results/rollout_sim.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from unittest.mock import patch

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ratchet.rollout import decide, decision
from ratchet.rollout.experiments import Experiment
from ratchet.rollout.sequential import ERROR_RATE_TAU, Check, cs_halfwidth
from ratchet.store.outcomes import ArmStats

STAGES = [10, 25, 50, 75, 100]
MIN_MINUTES = 60
MIN_REQUESTS = 100
CONFIG = {"max_error_rate_increase": 0.05, "max_latency_increase_ms": 500.0, "min_quality": 0.70, "alpha": 0.05,
          "catastrophe_window": 20}
LAT_MEDIAN_S, LAT_SIGMA = 1.5, 0.6  # lognormal latency, as in the reference simulation
FEEDBACK_SHARE = 0.5  # share of requests that get a quality score


@dataclass(frozen=True)
class Scenario:
    name: str
    error_b: float = 0.02
    error_c: float = 0.02
    latency_shift_s: float = 0.0
    quality_b: float = 0.80
    quality_c: float = 0.80
    regression: bool = False


SCENARIOS = [
    Scenario("no regression (A/A)"),
    Scenario("error 2 % → 7 %", error_c=0.07, regression=True),
    Scenario("error 2 % → 12 %", error_c=0.12, regression=True),
    Scenario("latency +600 ms", latency_shift_s=0.6, regression=True),
    Scenario("quality 0.80 → 0.65", quality_c=0.65, regression=True),
]


def wald_error_rate_check(errors_c: int, n_c: int, errors_b: int, n_b: int, *, threshold: float = 0.05,
                          tau: float = ERROR_RATE_TAU, alpha: float = 0.05, min_n: int = 20) -> Check:
    """The error-rate trigger before issue 17.3 (its statistics and rule; a shorter message): a two-sided
    normal-mixture sequence around the rate difference with the Wald variance (each arm's own smoothed
    rate); fires when LCB > 0 and UCB > threshold."""
    if n_c < min_n or n_b < min_n:
        return Check("error_rate", False, 0.0, -1.0, 1.0, threshold, n_c, n_b, "waiting for data")
    rate_c, rate_b = errors_c / n_c, errors_b / n_b
    delta = rate_c - rate_b
    pc, pb = (errors_c + 1) / (n_c + 2), (errors_b + 1) / (n_b + 2)
    h = cs_halfwidth(pc * (1 - pc) / n_c + pb * (1 - pb) / n_b, tau, alpha)
    fired = delta - h > 0 and delta + h > threshold
    return Check("error_rate", fired, delta, delta - h, delta + h, threshold, n_c, n_b,
                 f"error rate {rate_c:.1%} vs baseline {rate_b:.1%}")


class Arm:
    """Running sums of one arm, turned into the ArmStats the controller reads."""

    def __init__(self) -> None:
        self.n = self.errors = 0
        self.lat_sum = self.lat_sq = 0.0
        self.q_n = 0
        self.q_sum = self.q_sq = 0.0

    def add(self, errors: np.ndarray, latency: np.ndarray, quality: np.ndarray) -> None:
        self.n += len(errors)
        self.errors += int(errors.sum())
        self.lat_sum += float(latency.sum())
        self.lat_sq += float((latency ** 2).sum())
        q = quality[~np.isnan(quality)]
        self.q_n += len(q)
        self.q_sum += float(q.sum())
        self.q_sq += float((q ** 2).sum())

    def stats(self) -> ArmStats:
        n, qn = self.n, self.q_n
        mean = self.lat_sum / n if n else 0.0
        var = (self.lat_sq - self.lat_sum ** 2 / n) / (n - 1) if n > 1 else 0.0
        q_mean = self.q_sum / qn if qn else None
        q_var = (self.q_sq - self.q_sum ** 2 / qn) / (qn - 1) if qn > 1 else 0.0
        return ArmStats(requests=n, errors=self.errors, error_rate=self.errors / n if n else 0.0,
                        latency_mean_s=mean, latency_std_s=max(var, 0.0) ** 0.5, quality_count=qn,
                        quality_mean=q_mean, quality_std=max(q_var, 0.0) ** 0.5 if qn else None)


def stream(rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
    return {"arm": rng.random(length), "err": rng.random(length), "z": rng.standard_normal(length),
            "fb": rng.random(length), "q": rng.random(length)}


def outcomes(s: Scenario, draws: dict[str, np.ndarray], idx: slice, candidate: np.ndarray
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.where(candidate, s.error_c, s.error_b)
    errors = draws["err"][idx] < p
    latency = LAT_MEDIAN_S * np.exp(LAT_SIGMA * draws["z"][idx]) + np.where(candidate, s.latency_shift_s, 0.0)
    mean_q = np.where(candidate, s.quality_c, s.quality_b)
    quality = np.where(draws["fb"][idx] < FEEDBACK_SHARE, (draws["q"][idx] < mean_q).astype(float), np.nan)
    return errors, latency, quality


def run(s: Scenario, draws: dict[str, np.ndarray], rate: int) -> tuple[str, int, int, float, str]:
    """One rollout under Ratchet's controller; returns (outcome, candidate requests, total requests, minutes,
    the trigger that rolled it back or "")."""
    exp = Experiment(experiment_id="sim", signature="sim", baseline_version="b", candidate_version="c",
                     status="running", stages=STAGES, stage_index=0, stage_started_at=0.0,
                     min_stage_minutes=MIN_MINUTES, min_stage_requests=MIN_REQUESTS, salt="sim", config=CONFIG)
    base, cand = Arm(), Arm()
    minute, pos = 0, 0
    total = len(draws["arm"])
    while pos + rate <= total:
        share = STAGES[exp.stage_index] / 100
        idx = slice(pos, pos + rate)
        candidate = draws["arm"][idx] < share
        errors, latency, quality = outcomes(s, draws, idx, candidate)
        base.add(errors[~candidate], latency[~candidate], quality[~candidate])
        cand.add(errors[candidate], latency[candidate], quality[candidate])
        pos += rate
        minute += 1
        decision = decide(exp, base.stats(), cand.stats(), cand.n - exp.stage_start_requests, now=minute * 60.0)
        action = decision.action
        if action == "rollback":
            return "rollback", cand.n, pos, minute, decision.reason.split(" trigger")[0]
        if action == "promote":
            return "promoted", cand.n, pos, minute, ""
        if action == "advance":
            exp.stage_index += 1
            exp.stage_started_at = minute * 60.0
            exp.stage_start_requests = cand.n
    return "unfinished", cand.n, pos, minute, ""


def run_before(s: Scenario, draws: dict[str, np.ndarray], rate: int) -> tuple[str, int, int, float, str]:
    """:func:`run` with the error-rate trigger Ratchet had before issue 17.3."""
    with patch.object(decision, "error_rate_check", wald_error_rate_check):
        return run(s, draws, rate)


def naive(base: ArmStats, cand: ArmStats, stage_minutes: float) -> str:
    """Seed 001's rule: raw deltas against the thresholds once the stage has 100 candidate requests."""
    if cand.requests < MIN_REQUESTS:
        return "hold"
    if cand.error_rate - base.error_rate > 0.05:
        return "rollback"
    if cand.latency_mean_s - base.latency_mean_s > 0.5:
        return "rollback"
    if cand.quality_mean is not None and cand.quality_mean < 0.70:
        return "rollback"
    if stage_minutes < MIN_MINUTES:
        return "hold"
    return "advance_or_promote"


def _rows(scenario: Scenario, results: dict[str, list[tuple]]) -> list[dict[str, object]]:
    """One JSON row per controller for ``scenario``; regressions also carry the new/before median ratio."""
    rows: list[dict[str, object]] = []
    for controller, outs in results.items():
        rolled = [o for o in outs if o[0] == "rollback"]
        promoted = [o for o in outs if o[0] == "promoted"]
        cand = [o[1] for o in rolled]
        rows.append({
            "scenario": scenario.name, "controller": controller, "runs": len(outs),
            "rollback_rate": round(len(rolled) / len(outs), 4),
            "promoted_rate": round(len(promoted) / len(outs), 4),
            "median_candidate_requests_to_rollback": float(np.median(cand)) if rolled else None,
            "p90_candidate_requests_to_rollback": float(np.percentile(cand, 90)) if rolled else None,
            "median_requests_to_rollback": float(np.median([o[2] for o in rolled])) if rolled else None,
            "median_minutes_to_full_rollout": float(np.median([o[3] for o in promoted])) if promoted else None,
            "regression": scenario.regression,
            "rollback_rate_95ci": _wilson(len(rolled), len(outs)),
            "rollbacks_by_trigger": dict(Counter(o[4] for o in rolled if len(o) > 4 and o[4])),
        })
    new, before = rows[0]["median_candidate_requests_to_rollback"], rows[1]["median_candidate_requests_to_rollback"]
    if scenario.regression and isinstance(new, float) and isinstance(before, float) and before:
        rows[0]["median_ratio_to_before"] = round(new / before, 3)
    return rows


def _wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """Wilson score 95 % interval of a proportion k / n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return [round(max(centre - half, 0.0), 4), round(min(centre + half, 1.0), 4)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=10, help="requests per minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/rollout_sim.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    length = 20_000  # enough requests for a full rollout at any rate used here
    rows = []
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=Console(stderr=True))
    with progress:
        task = progress.add_task("simulating", total=len(SCENARIOS) * args.runs)
        for scenario in SCENARIOS:
            progress.update(task, description=scenario.name)
            results: dict[str, list[tuple]] = {"ratchet": [], "ratchet before 17.3": [], "naive": []}
            for r in range(args.runs):  # the three controllers interleaved, each on the same stream
                draws = stream(np.random.default_rng([args.seed, r]), length)
                results["ratchet"].append(run(scenario, draws, args.rate))
                results["ratchet before 17.3"].append(run_before(scenario, draws, args.rate))
                results["naive"].append(_naive_run(scenario, draws, args.rate))
                progress.advance(task)
            rows.extend(_rows(scenario, results))
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "setup": {"stages": STAGES, "min_stage_minutes": MIN_MINUTES, "min_stage_requests": MIN_REQUESTS,
                  "requests_per_minute": args.rate, "check_every_minutes": 1, "feedback_share": FEEDBACK_SHARE,
                  "latency": f"lognormal median {LAT_MEDIAN_S} s, sigma {LAT_SIGMA}", "config": CONFIG},
        "seconds": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"{args.runs} runs per scenario, {args.rate} requests/min, check every minute")
    for column in ("scenario", "controller", "rolled back", "promoted", "median cand. req. to rollback",
                   "new / before", "median min to full rollout"):
        table.add_column(column, justify="left" if column in ("scenario", "controller") else "right")
    for r in rows:
        table.add_row(r["scenario"], r["controller"], f"{r['rollback_rate']:.1%}", f"{r['promoted_rate']:.1%}",
                      "–" if r["median_candidate_requests_to_rollback"] is None
                      else f"{r['median_candidate_requests_to_rollback']:.0f}",
                      f"{r['median_ratio_to_before']:.2f}" if "median_ratio_to_before" in r else "",
                      "–" if r["median_minutes_to_full_rollout"] is None
                      else f"{r['median_minutes_to_full_rollout']:.0f}")
    Console().print(table)


def _naive_run(s: Scenario, draws: dict[str, np.ndarray], rate: int) -> tuple[str, int, int, float]:
    """The naive rule with the same staging as Ratchet (advance after 60 min and 100 candidate requests)."""
    stage_index, stage_start = 0, 0
    cand_total = 0
    stage_base, stage_cand = Arm(), Arm()
    minute, pos = 0, 0
    while pos + rate <= len(draws["arm"]):
        share = STAGES[stage_index] / 100
        idx = slice(pos, pos + rate)
        candidate = draws["arm"][idx] < share
        errors, latency, quality = outcomes(s, draws, idx, candidate)
        stage_base.add(errors[~candidate], latency[~candidate], quality[~candidate])
        stage_cand.add(errors[candidate], latency[candidate], quality[candidate])
        cand_total += int(candidate.sum())
        pos += rate
        minute += 1
        verdict = naive(stage_base.stats(), stage_cand.stats(), minute - stage_start)
        if verdict == "rollback":
            return "rollback", cand_total, pos, minute
        if verdict == "advance_or_promote":
            if stage_index + 1 >= len(STAGES) or STAGES[stage_index + 1] >= 100:
                return "promoted", cand_total, pos, minute
            stage_index += 1
            stage_start = minute
            stage_base, stage_cand = Arm(), Arm()
    return "unfinished", cand_total, pos, minute


if __name__ == "__main__":
    main()
