"""The instruction search after the demo search: MIPROv2 proposes instructions for the winning demo set
(instructions only, the demos stay) within the time left, and its result is kept only when it beats the
demo set on the same dev examples with an interval that excludes zero."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import dspy

from ratchet.evaluation.paired import compare_paired
from ratchet.optimize.budget import BudgetExhausted, DeadlineGuard, InstructionCost, affordable_trials, guarded_lm
from ratchet.optimize.optimizers.base import OptimizeContext

__all__ = ["KEEP_CONFIDENCE", "InstructionOutcome", "search_instructions"]

log = logging.getLogger(__name__)

KEEP_CONFIDENCE = 0.95  # both sides were chosen on these dev examples: a strict interval guards the choice
MIN_TRIALS = 3  # fewer trials than this cannot tell instruction candidates apart: not worth running
Score = Callable[[dspy.Module, Sequence[dspy.Example]], list[float]]


@dataclass
class InstructionOutcome:
    """What the instruction search did: ``kept`` is True when its program replaced the demo-search winner."""

    status: str  # "kept", "not better", "skipped" or "stopped"
    reason: str
    program: dspy.Module | None = None
    trials: int = 0
    seconds: float = 0.0
    dev_score: float | None = None
    comparison: dict[str, Any] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def kept(self) -> bool:
        return self.status == "kept"

    def to_dict(self) -> dict[str, Any]:
        out = {"optimizer": "mipro (instructions only, demos of the winner)", "status": self.status,
               "reason": self.reason, "trials": self.trials, "seconds": round(self.seconds, 2),
               "dev_score": None if self.dev_score is None else round(self.dev_score, 4),
               "comparison": self.comparison}
        out.update(self.details)
        return out


def search_instructions(program: dspy.Module, winner_scores: list[float], ctx: OptimizeContext,
                        dev: Sequence[dspy.Example], score: Score, *, seconds_per_example: float,
                        seconds_left: float, guard: DeadlineGuard) -> InstructionOutcome:
    """Run MIPROv2 over ``program``'s instructions if the time left affords ``MIN_TRIALS`` trials, then compare.

    ``winner_scores`` are ``program``'s scores on the first dev examples (completed here to the whole split);
    ``score(module, examples)`` evaluates a module; ``guard`` fails LM calls past the deadline.
    """
    started = time.perf_counter()
    candidates = 3
    cost = InstructionCost(seconds_per_example=seconds_per_example, dev_size=len(dev),
                           unscored_dev=len(dev) - len(winner_scores), candidates=candidates)
    trials = affordable_trials(cost, seconds_left, cap=ctx.trials or 30)
    if trials < MIN_TRIALS:
        return InstructionOutcome(
            "skipped", f"{seconds_left:.0f} s left; {MIN_TRIALS} MIPROv2 trials need about "
                       f"{cost.fixed + MIN_TRIALS * cost.per_trial:.0f} s", seconds=time.perf_counter() - started)
    optimizer = dspy.MIPROv2(metric=ctx.metric, prompt_model=guarded_lm(ctx.prompt_lm, guard),
                             task_model=guarded_lm(ctx.task_lm, guard),
                             teacher_settings={"lm": guarded_lm(ctx.teacher_lm, guard)}, max_bootstrapped_demos=0,
                             max_labeled_demos=0, num_candidates=candidates, auto=None, seed=ctx.seed,
                             num_threads=ctx.num_threads, max_errors=10 * (len(ctx.trainset) + len(dev)) + 10)
    guard.armed = True
    try:
        compiled = optimizer.compile(program.deepcopy(), trainset=ctx.trainset, valset=list(dev), num_trials=trials,
                                     minibatch=len(dev) > 50, program_aware_proposer=False,
                                     data_aware_proposer=False)
    except Exception as exc:
        stopped = isinstance(exc, BudgetExhausted) or guard.tripped > 0
        log.warning("instruction search ended without a result: %s: %s", type(exc).__name__, exc)
        return InstructionOutcome("stopped" if stopped else "failed",
                                  "the time budget ran out during MIPROv2" if stopped
                                  else f"MIPROv2 failed: {type(exc).__name__}: {exc}",
                                  trials=trials, seconds=time.perf_counter() - started)
    finally:
        guard.armed = False
    for predictor, source in zip(compiled.predictors(), program.predictors(), strict=True):
        predictor.demos = list(source.demos)  # MIPROv2 searched instructions only: the winner's demos stay
    full = winner_scores + score(program, dev[len(winner_scores):])
    theirs = score(compiled, dev)
    comparison = compare_paired(full, theirs, confidence=KEEP_CONFIDENCE, seed=ctx.seed)
    details = {"instructions": [p.signature.instructions for p in compiled.predictors()],
               "guard_tripped_calls": guard.tripped}
    outcome = InstructionOutcome(
        "kept" if comparison.ci_low > 0 else "not better",
        f"dev {comparison.candidate_mean:.3f} vs demo search {comparison.baseline_mean:.3f}, "
        f"{comparison.mean_difference * 100:+.1f} points ({KEEP_CONFIDENCE:.0%} interval "
        f"{comparison.ci_low * 100:+.1f} to {comparison.ci_high * 100:+.1f})",
        program=compiled, trials=trials, seconds=time.perf_counter() - started,
        dev_score=comparison.candidate_mean, comparison=comparison.to_dict(), details=details)
    if guard.tripped:
        outcome.reason += f"; {guard.tripped} LM calls past the deadline were refused"
    return outcome
