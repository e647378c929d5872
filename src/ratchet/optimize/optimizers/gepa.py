"""GEPA: reflective prompt evolution; the reflection model reads failures and rewrites instructions."""

from __future__ import annotations

from typing import Any, ClassVar

import dspy

from ratchet.optimize.optimizers.base import OptimizeContext

__all__ = ["GepaOptimizer"]


class GepaOptimizer:
    name: ClassVar[str] = "gepa"

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        if ctx.trials:
            return {"max_metric_calls": ctx.trials * max(1, len(ctx.valset)), "seed": ctx.seed}
        return {"auto": ctx.auto or "light", "seed": ctx.seed}

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        metric = ctx.metric

        def feedback_metric(gold: Any, pred: Any, trace: Any = None, pred_name: Any = None,
                            pred_trace: Any = None) -> float:
            return float(metric(gold, pred))

        optimizer = dspy.GEPA(metric=feedback_metric, reflection_lm=ctx.reflection_lm, num_threads=ctx.num_threads,
                              **self.parameters(ctx))
        return optimizer.compile(student, trainset=ctx.trainset, valset=ctx.valset)

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        params = self.parameters(ctx)
        return int(params.get("max_metric_calls") or 460)
