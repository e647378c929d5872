"""SIMBA: stochastic mini-batch ascent over demos and self-written rules."""

from __future__ import annotations

from typing import Any, ClassVar

import dspy

from ratchet.optimize.optimizers.base import OptimizeContext

__all__ = ["SimbaOptimizer"]


class SimbaOptimizer:
    name: ClassVar[str] = "simba"

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        return {"bsize": max(2, min(32, len(ctx.trainset))), "num_candidates": 4,
                "max_steps": ctx.trials or 4, "max_demos": min(ctx.max_demos, 8)}

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        optimizer = dspy.SIMBA(metric=ctx.metric, prompt_model=ctx.prompt_lm, num_threads=ctx.num_threads,
                               **self.parameters(ctx))
        return optimizer.compile(student, trainset=ctx.trainset, seed=ctx.seed)

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        p = self.parameters(ctx)
        return p["max_steps"] * 2 * p["bsize"] * p["num_candidates"] + (p["num_candidates"] + 1) * len(ctx.trainset)
