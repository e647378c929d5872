"""LabeledFewShot: k labelled demos, no LM calls. Ratchet orders the training set so they are class-balanced."""

from __future__ import annotations

from typing import Any, ClassVar

import dspy

from ratchet.optimize.optimizers.base import OptimizeContext, balanced_order

__all__ = ["LabeledOptimizer"]


class LabeledOptimizer:
    name: ClassVar[str] = "labeled"

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        return {"k": ctx.max_demos, "sample": False, "balanced": ctx.spec.label_field is not None}

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        optimizer = dspy.LabeledFewShot(k=ctx.max_demos)
        return optimizer.compile(student, trainset=balanced_order(ctx), sample=False)

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        return 0
