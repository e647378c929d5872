"""BootstrapFewShotWithRandomSearch: several bootstrapped demo sets, the best on the validation set wins."""

from __future__ import annotations

from typing import Any, ClassVar

import dspy

from ratchet.optimize.optimizers.base import OptimizeContext, balanced_order

__all__ = ["BootstrapRSOptimizer"]


class BootstrapRSOptimizer:
    name: ClassVar[str] = "bootstrap-rs"

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        bootstrapped = min(8 if ctx.base_model else 4, ctx.max_demos)
        return {"max_bootstrapped_demos": bootstrapped, "max_labeled_demos": ctx.max_demos - bootstrapped,
                "num_candidate_programs": ctx.trials or 6}

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        optimizer = dspy.BootstrapRS(metric=ctx.metric, teacher_settings={"lm": ctx.teacher_lm},
                                     num_threads=ctx.num_threads, max_errors=len(ctx.trainset) + len(ctx.valset) + 1,
                                     **self.parameters(ctx))
        return optimizer.compile(student, trainset=balanced_order(ctx), valset=ctx.valset)

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        return (self.parameters(ctx)["num_candidate_programs"] + 3) * len(ctx.valset) + len(ctx.trainset)
