"""BootstrapFewShot: demos from the teacher's own successful traces, topped up with labelled ones."""

from __future__ import annotations

from typing import Any, ClassVar

import dspy

from ratchet.optimize.optimizers.base import OptimizeContext, balanced_order

__all__ = ["BootstrapOptimizer"]


class BootstrapOptimizer:
    name: ClassVar[str] = "bootstrap"

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        bootstrapped = min(8 if ctx.base_model else 4, ctx.max_demos)
        return {"max_bootstrapped_demos": bootstrapped, "max_labeled_demos": ctx.max_demos - bootstrapped,
                "max_rounds": 1}

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        optimizer = dspy.BootstrapFewShot(metric=ctx.metric, teacher_settings={"lm": ctx.teacher_lm},
                                          max_errors=len(ctx.trainset) + 1, **self.parameters(ctx))
        return optimizer.compile(student, trainset=balanced_order(ctx))

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        return min(len(ctx.trainset), 4 * self.parameters(ctx)["max_bootstrapped_demos"])
