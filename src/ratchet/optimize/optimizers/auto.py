"""``auto`` (the default): for a base model, search demo sets first, then instructions within the budget;
for a chat model, MIPROv2.

A base model (the embedded one, ``adapter = "completion"``, or ``lm.base_model = true``): the demo search
(:mod:`ratchet.optimize.demo_search`) picks the number, the draw and the order of demos by successive
halving on the dev split, with sizes up to what the context holds; then MIPROv2 searches instructions for the
winning demos in the time left (:mod:`ratchet.optimize.instruction_search`), and its result replaces the
winner only when it is better on the same dev examples with a 95 % interval above zero. The time left is
``budget_minutes`` less the demo search; without a budget the instruction search may take
``instruction_share`` of the demo search's time. What was tried, each candidate's dev score and cost, and
what won are in :attr:`AutoOptimizer.report` (and so in the version's recorded parameters).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from typing import Any, ClassVar

import dspy

from ratchet.data.sampling import balanced_demos
from ratchet.evaluation.fewshot import attach_demos
from ratchet.evaluation.runner import evaluate_program
from ratchet.optimize.budget import DeadlineGuard, guarded_lm
from ratchet.optimize.demo_fit import DEFAULT_CAP, demo_capacity, demo_group, longest_inputs, prompt_tokens
from ratchet.optimize.demo_search import (
    DemoPlan,
    Trial,
    challenge_incumbent,
    draw_demos,
    plan_grid,
    successive_halving,
)
from ratchet.optimize.instruction_search import search_instructions
from ratchet.optimize.optimizers.base import OptimizeContext, balanced_order
from ratchet.optimize.optimizers.mipro import MiproOptimizer

__all__ = ["MAX_DEMOS", "AutoOptimizer"]

MAX_DEMOS = 96  # the demo search's largest set, context permitting (more costs every request prefill time)


class AutoOptimizer:
    name: ClassVar[str] = "auto"

    def __init__(self) -> None:
        self.report: dict[str, Any] = {}

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        params: dict[str, Any] = {"budget_minutes": ctx.budget_minutes}
        if ctx.base_model:
            params.update(strategy="demo search (successive halving on dev), then MIPROv2 instructions within "
                                   "the budget", instruction_share=None if ctx.budget_minutes else
                          ctx.instruction_share)
        else:
            params.update(strategy="mipro (chat model)", mipro=MiproOptimizer().parameters(ctx))
        return {**params, **self.report}

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        if not ctx.base_model:
            return MiproOptimizer().estimated_calls(ctx)
        return 3 * len(ctx.valset)

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        guard = DeadlineGuard(ctx.deadline)
        if not ctx.base_model:
            return self._chat(student, ctx, guard)
        return self._base(student, ctx, guard)

    # -- chat models: MIPROv2, stopped at the deadline --------------------------------------------
    def _chat(self, student: dspy.Module, ctx: OptimizeContext, guard: DeadlineGuard) -> dspy.Module:
        """MIPROv2; with a budget, its LM calls past the deadline fail (its evaluations count them as errors, so
        it ends soon after and returns the best program it had scored)."""
        guard.armed = True
        started = time.perf_counter()
        roles = {name: guarded_lm(getattr(ctx, name), guard)
                 for name in ("task_lm", "prompt_lm", "teacher_lm", "reflection_lm")}
        try:
            with dspy.context(lm=roles["task_lm"]):
                program = MiproOptimizer().compile(student, replace(ctx, **roles))
        except Exception:
            if not guard.tripped:
                raise
            self.report = {"winner": "none: the budget ran out before MIPROv2 finished (the program is unchanged)",
                           "seconds": round(time.perf_counter() - started, 2),
                           "refused_calls_past_deadline": guard.tripped}
            return student.deepcopy()
        self.report = {"winner": "mipro", "seconds": round(time.perf_counter() - started, 2),
                       "refused_calls_past_deadline": guard.tripped}
        return program

    # -- base models: demos first -----------------------------------------------------------------
    def _base(self, student: dspy.Module, ctx: OptimizeContext, guard: DeadlineGuard) -> dspy.Module:
        started = time.monotonic()
        group = demo_group(ctx.spec)
        dev = balanced_demos(ctx.valset, len(ctx.valset), group, ctx.seed)  # every prefix covers the groups
        signature = student.predictors()[0].signature
        fit = _Fit(signature, ctx)
        capacity = fit.capacity(draw_demos(ctx.trainset, DemoPlan(fit.cap, 0, "shuffled"), group))
        # The incumbent: the demos LabeledFewShot takes (issue 5's base-model default). It is a candidate like the
        # others (first, so a tie keeps it), and the search's winner must then beat it on the whole dev split.
        labeled = balanced_order(ctx)[:ctx.max_demos]
        labeled = labeled[:fit.capacity(labeled)]
        trials = [Trial(DemoPlan(len(labeled), 0, "interleaved", name=f"incumbent: LabeledFewShot's {len(labeled)} "
                                 "demos"), labeled, prompt_tokens=fit.tokens(labeled))]
        for plan in plan_grid(capacity, len(ctx.trainset)):
            demos = draw_demos(ctx.trainset, plan, group)
            demos = demos[:fit.capacity(demos)]  # another draw's demos may be longer
            trials.append(Trial(plan, demos, prompt_tokens=fit.tokens(demos)))

        def score(demos: Sequence[dspy.Example], examples: Sequence[dspy.Example]) -> list[float]:
            return self._score(attach_demos(student.deepcopy(), demos), examples, ctx)

        candidates_tokens = sum(t.prompt_tokens or 0 for t in trials)
        keep = ctx.prompt_budget.keep_prompts(candidates_tokens) if ctx.prompt_budget is not None else nullcontext()
        with keep:  # each candidate's prompt is read once, then restored in the next rungs instead of re-read
            search = successive_halving(trials, dev, score, deadline=ctx.deadline)
            challenge = challenge_incumbent(trials[0], search.winner, dev, score, deadline=ctx.deadline,
                                            seed=ctx.seed)
        chosen = search.winner if challenge.kept or search.winner is trials[0] else trials[0]
        winner = attach_demos(student.deepcopy(), chosen.demos)
        searched = time.monotonic() - started
        scored = sum(len(t.scores) for t in search.trials)
        per_example = sum(t.seconds for t in search.trials) / max(1, scored)
        if ctx.deadline is not None:  # the held-out comparison after compile is inside the budget too
            seconds_left = ctx.deadline - time.monotonic() - ctx.reserved_examples * per_example
            guard.deadline = ctx.deadline - ctx.reserved_examples * per_example
        else:
            seconds_left = ctx.instruction_share * searched
            guard.deadline = time.monotonic() + seconds_left
        outcome = search_instructions(winner, list(chosen.scores), ctx, dev,
                                      lambda module, examples: self._score(module, examples, ctx),
                                      seconds_per_example=per_example, seconds_left=seconds_left, guard=guard)
        self.report = {
            "demo_search": {
                "max_demos_that_fit": capacity, "prompt_limit_tokens": ctx.prompt_budget.limit
                if ctx.prompt_budget and ctx.prompt_budget.enabled else None,
                "rungs_dev_examples": search.rungs, "seconds": round(searched, 2), "calls": scored,
                "stopped": search.stopped, "search_winner": search.winner.plan.label,
                "incumbent_challenge": challenge.to_dict(), "winner": chosen.plan.label,
                "winner_dev_score": round(chosen.mean, 4), "winner_dev_examples": len(chosen.scores),
                "candidates": [t.to_dict() for t in search.trials],
            },
            "instruction_search": outcome.to_dict(),
            "winner": "mipro instructions + " + chosen.plan.label if outcome.kept
            else "demo search: " + chosen.plan.label,
        }
        return outcome.program if outcome.kept and outcome.program is not None else winner

    @staticmethod
    def _score(module: dspy.Module, examples: Sequence[dspy.Example], ctx: OptimizeContext) -> list[float]:
        if not examples:
            return []
        return evaluate_program(module, examples, ctx.metric, num_threads=ctx.num_threads).scores


class _Fit:
    """How many demos fit the task model's context with the longest known input (``max_demos`` at most)."""

    def __init__(self, signature: type[dspy.Signature], ctx: OptimizeContext) -> None:
        self.signature, self.adapter, self.budget = signature, ctx.adapter, ctx.prompt_budget
        self.cap = min(int(ctx.options.get("max_demos", MAX_DEMOS)), len(ctx.trainset))
        self.inputs = longest_inputs([*ctx.trainset, *ctx.valset])

    def capacity(self, demos: Sequence[dspy.Example]) -> int:
        if self.adapter is None or self.budget is None:
            return max(1, min(self.cap, len(demos), DEFAULT_CAP))
        return max(1, demo_capacity(self.adapter, self.signature, demos, self.inputs, self.budget, cap=self.cap))

    def tokens(self, demos: Sequence[dspy.Example]) -> int | None:
        if self.adapter is None or self.budget is None:
            return None
        return prompt_tokens(self.adapter, self.signature, demos, self.inputs, self.budget)
