"""MIPROv2 (the default): Bayesian search over proposed instructions and demo sets."""

from __future__ import annotations

import math
from typing import Any, ClassVar

import dspy

from ratchet.optimize.optimizers.base import OptimizeContext, balanced_order

__all__ = ["MiproOptimizer"]

_AUTO = {"light": (6, 100), "medium": (12, 300), "heavy": (18, 1000)}  # candidates, validation size


class MiproOptimizer:
    name: ClassVar[str] = "mipro"

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        # MIPROv2's defaults (4 + 4 demos) suit large chat models; a small base model needs many balanced demos.
        bootstrapped = min(8 if ctx.base_model else 4, ctx.max_demos)
        params: dict[str, Any] = {"max_bootstrapped_demos": bootstrapped,
                                  "max_labeled_demos": ctx.max_demos - bootstrapped, "seed": ctx.seed}
        if ctx.base_model:
            params.update(program_aware_proposer=False, data_aware_proposer=False)
        if ctx.trials:
            params.update(auto=None, num_trials=ctx.trials, num_candidates=max(3, min(12, ctx.trials // 2)))
        else:
            params["auto"] = ctx.auto or "light"
        return params

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        params = self.parameters(ctx)
        init = {k: params[k] for k in ("max_bootstrapped_demos", "max_labeled_demos", "seed", "auto")}
        if params["auto"] is None:
            init["num_candidates"] = params["num_candidates"]
        optimizer = dspy.MIPROv2(metric=ctx.metric, prompt_model=ctx.prompt_lm, task_model=ctx.task_lm,
                                 teacher_settings={"lm": ctx.teacher_lm}, num_threads=ctx.num_threads,
                                 max_errors=len(ctx.trainset) + len(ctx.valset) + 1, **init)
        compile_kwargs: dict[str, Any] = {}
        if ctx.base_model:
            # A small base model cannot summarise a dataset or describe program code usefully; those
            # proposer stages cost long generations for nothing. Instructions still get proposed.
            compile_kwargs.update(program_aware_proposer=False, data_aware_proposer=False)
        if params["auto"] is None:
            compile_kwargs["num_trials"] = params["num_trials"]
            compile_kwargs["minibatch"] = len(ctx.valset) > 50
        return optimizer.compile(student, trainset=balanced_order(ctx), valset=ctx.valset, **compile_kwargs)

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        params = self.parameters(ctx)
        if params["auto"] is None:
            trials, n = params["num_trials"], params["num_candidates"]
        else:
            n, _ = _AUTO[params["auto"]]
            trials = int(max(2 * 2 * math.log2(n), 1.5 * n))
        val = min(len(ctx.valset), _AUTO.get(params.get("auto") or "light", (0, 100))[1])
        per_trial = 35 if val > 50 else val
        return trials * per_trial + 3 * val + n * params["max_bootstrapped_demos"] + 20
