"""Search the demo sets of a base model on the dev split: how many demos, which ones, in what order.

A small base model's score is set mostly by its demos, so the ``auto`` optimizer searches them first and
cheaply, before any instruction search. The candidates (:func:`plan_grid`) differ in size (up to what the
context holds; a smaller size takes the first demos of the largest, so the prompts nest), in the seed of the draw
(class-balanced for a choice output, else balanced over which output fields an example fills, the empty case
included) and in order (shuffled, or interleaved round-robin by group). :func:`successive_halving` scores every
candidate on a short prefix of the dev split, keeps the best third, scores those on a longer prefix, and so on:
most of the evaluation goes to the few candidates that stay in contention. The search knows nothing of LMs —
``score`` does the evaluating.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import dspy

from ratchet.data.sampling import balanced_demos
from ratchet.evaluation.paired import compare_paired

__all__ = ["INCUMBENT_CONFIDENCE", "Challenge", "DemoPlan", "SearchResult", "Trial", "challenge_incumbent",
           "draw_demos", "plan_grid", "rung_sizes", "successive_halving"]

Order = Literal["shuffled", "interleaved"]
Group = Callable[[dspy.Example], str]
Scorer = Callable[[Sequence[dspy.Example], Sequence[dspy.Example]], list[float]]  # (demos, examples) -> scores

INCUMBENT_CONFIDENCE = 0.95
"""The search's winner replaces the incumbent only when better on dev with an interval of this level above zero:
it was chosen on a few of those examples among many candidates, so a tie or a small lead is noise."""


@dataclass(frozen=True)
class DemoPlan:
    """One candidate demo set: the first ``size`` demos of draw ``draw``, shuffled or interleaved by group
    (``name``: a set chosen another way, such as the incumbent)."""

    size: int
    draw: int
    order: Order
    name: str | None = None
    pool: int = 0  # the size of the draw these demos lead (0: ``size``); the grid's sizes share the largest's

    @property
    def label(self) -> str:
        return self.name or f"{self.size} demos, draw {self.draw}, {self.order}"


@dataclass
class Trial:
    """A candidate and what it has cost so far: its scores on a prefix of the dev split, in dev order."""

    plan: DemoPlan
    demos: list[dspy.Example]
    prompt_tokens: int | None = None
    scores: list[float] = field(default_factory=list)
    seconds: float = 0.0
    rung: int = -1  # the last rung it was scored on (-1: not scored)

    @property
    def mean(self) -> float:
        return sum(self.scores) / len(self.scores) if self.scores else 0.0

    def mean_on(self, n: int) -> float:
        """The mean of its first ``n`` scores (the examples every candidate of a rung shares)."""
        head = self.scores[:n]
        return sum(head) / len(head) if head else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"candidate": self.plan.label, "size": len(self.demos), "draw": self.plan.draw,
                "order": self.plan.order, "prompt_tokens": self.prompt_tokens, "rung": self.rung,
                "dev_examples": len(self.scores), "dev_score": round(self.mean, 4),
                "calls": len(self.scores), "seconds": round(self.seconds, 2)}


@dataclass
class SearchResult:
    """Every candidate as far as it got, the winner, the rung sizes and why the search ended."""

    trials: list[Trial]
    winner: Trial
    rungs: list[int]
    seconds: float
    stopped: str | None = None  # why the search stopped before its last rung (the deadline), else None

    @property
    def calls(self) -> int:
        return sum(len(t.scores) for t in self.trials)


def draw_demos(trainset: Sequence[dspy.Example], plan: DemoPlan, group: Group | None) -> list[dspy.Example]:
    """The demos of ``plan``: the first ``size`` of a balanced draw of ``pool`` demos over ``group`` (seeded by
    ``plan.draw``), interleaved round-robin by group or shuffled.

    The sizes of one draw and order nest: a smaller candidate's demos are the first of a larger one's, so its
    prompt is a prefix of the larger prompt and reuses its KV cache. An interleaved prefix is balanced; a shuffled
    one is about balanced (a random part of a balanced set).
    """
    demos = balanced_demos(trainset, max(plan.size, plan.pool), group, seed=plan.draw)
    if plan.order == "shuffled":
        random.Random(10_007 + plan.draw).shuffle(demos)
    return demos[:plan.size]


def plan_grid(max_size: int, train_size: int, *, draws: int = 2, min_size: int = 4) -> list[DemoPlan]:
    """The candidates: sizes ``max_size``, half and a quarter of it (at least ``min_size``, at most the training
    set; the smaller the first demos of the largest); for each, draw 0 shuffled and interleaved and the other
    draws shuffled. The first plan is the safe default a tie falls back to (most demos, shuffled)."""
    top = max(1, min(max_size, train_size))
    sizes = sorted({top, *(s for s in (top // 2, top // 4) if s >= min_size)}, reverse=True)
    plans: list[DemoPlan] = []
    for size in sizes:
        plans.append(DemoPlan(size, 0, "shuffled", pool=top))
        plans.append(DemoPlan(size, 0, "interleaved", pool=top))
        plans.extend(DemoPlan(size, draw, "shuffled", pool=top) for draw in range(1, draws))
    return plans


def rung_sizes(n_dev: int, n_candidates: int, eta: int = 3, first: int = 8) -> list[int]:
    """Dev examples each rung has scored: the last rung is the whole dev split, each earlier one ``1/eta`` of
    the next, as many rungs as it takes to narrow ``n_candidates`` to one (none below ``first``)."""
    if n_dev <= 0:
        return []
    rungs = max(1, math.ceil(math.log(max(1, n_candidates), eta)) + 1)
    sizes = [max(min(first, n_dev), round(n_dev / eta ** (rungs - 1 - r))) for r in range(rungs)]
    out: list[int] = []
    for size in sizes:
        if not out or size > out[-1]:
            out.append(min(size, n_dev))
    return out


def successive_halving(trials: list[Trial], dev: Sequence[dspy.Example], score: Scorer, *, eta: int = 3,
                       first: int = 8, deadline: float | None = None, full: bool = False,
                       clock: Callable[[], float] = time.monotonic,
                       on_step: Callable[[Trial], None] | None = None) -> SearchResult:
    """Score ``trials`` on growing prefixes of ``dev``, keeping the best ``1/eta`` after each rung.

    Each rung scores only the examples a survivor has not seen, those of one draw and order together, largest
    first (their prompts nest: the KV cache of one serves the next). The search ends when one candidate is left
    (scored on the last rung's prefix; ``full`` scores it on the whole dev split too) or at ``deadline``
    (``clock`` time): then the best of the last complete rung wins. Ties go to the earlier trial.
    """
    if not trials:
        raise ValueError("no candidates to search")
    started = clock()
    rungs = rung_sizes(len(dev), len(trials), eta, first)
    alive = list(range(len(trials)))
    complete = 0  # examples every survivor has scored
    stopped: str | None = None
    for rung, n in enumerate(rungs):
        last = len(alive) == 1
        if last and not full:
            break
        for index in sorted(alive, key=lambda i: _visit_key(trials[i])):
            if deadline is not None and clock() >= deadline:
                stopped = f"deadline reached in rung {rung + 1} of {len(rungs)} ({n} dev examples)"
                break
            trial = trials[index]
            todo = dev[len(trial.scores):n]
            if todo:
                began = clock()
                trial.scores.extend(score(trial.demos, todo))
                trial.seconds += clock() - began
            trial.rung = rung
            if on_step is not None:
                on_step(trial)
        if stopped:
            break
        complete = n
        if last:
            break
        keep = max(1, math.ceil(len(alive) / eta))
        alive = sorted(alive, key=lambda i: (-trials[i].mean_on(n), i))[:keep]
        alive.sort()
    if complete:
        winner = min(alive, key=lambda i: (-trials[i].mean_on(complete), i))
    else:
        scored = [i for i in alive if trials[i].scores]
        shared = min((len(trials[i].scores) for i in scored), default=0)
        winner = min(scored, key=lambda i: (-trials[i].mean_on(shared), i)) if scored else alive[0]
    return SearchResult(trials=trials, winner=trials[winner], rungs=rungs, seconds=clock() - started,
                        stopped=stopped)


def _visit_key(trial: Trial) -> tuple[Any, ...]:
    """The order a rung scores its candidates in: those of one draw and order together, largest first, so each
    smaller one's prompt is a prefix of the one scored just before (its KV cache is still there)."""
    plan = trial.plan
    return (plan.name or "", plan.draw, plan.order, -plan.size)


@dataclass
class Challenge:
    """Whether the search's winner replaced the incumbent (``kept``), and the paired comparison on dev."""

    kept: bool
    reason: str
    comparison: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"winner_replaces_incumbent": self.kept, "reason": self.reason, "comparison": self.comparison}


def challenge_incumbent(incumbent: Trial, winner: Trial, dev: Sequence[dspy.Example], score: Scorer, *,
                        deadline: float | None = None, clock: Callable[[], float] = time.monotonic,
                        seed: int = 0) -> Challenge:
    """Score both on the whole dev split and let ``winner`` replace ``incumbent`` only when the paired
    :data:`INCUMBENT_CONFIDENCE` interval of its lead lies above zero. Out of time, the incumbent stays."""
    if winner is incumbent:
        return Challenge(False, "the incumbent won the search")
    for trial in (winner, incumbent):
        todo = dev[len(trial.scores):]
        if todo:
            if deadline is not None and clock() >= deadline:
                return Challenge(False, "the budget ran out before the winner could be compared with the incumbent "
                                        "on the whole dev split: the incumbent stays")
            began = clock()
            trial.scores.extend(score(trial.demos, todo))
            trial.seconds += clock() - began
    n = len(dev)
    comparison = compare_paired(incumbent.scores[:n], winner.scores[:n], confidence=INCUMBENT_CONFIDENCE, seed=seed)
    verdict = (f"dev {comparison.candidate_mean:.3f} vs incumbent {comparison.baseline_mean:.3f} on {n} examples, "
               f"{comparison.mean_difference * 100:+.1f} points ({INCUMBENT_CONFIDENCE:.0%} interval "
               f"{comparison.ci_low * 100:+.1f} to {comparison.ci_high * 100:+.1f})")
    kept = comparison.ci_low > 0
    return Challenge(kept, verdict + ("" if kept else ": not clearly better, the incumbent stays"),
                     comparison.to_dict())
