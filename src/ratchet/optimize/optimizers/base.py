"""The optimizer plug-in interface: a small wrapper around one DSPy optimizer's ``compile``.

Each implementation (one file each) chooses DSPy parameters from the context —
including defaults for small base models, where the number and class balance of
demos dominate — and returns the compiled program.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import dspy

from ratchet.data.sampling import balanced_demos
from ratchet.lm.tokens import PromptBudget
from ratchet.programs.registry import ProgramSpec

__all__ = ["OptimizeContext", "Optimizer", "balanced_order"]


@dataclass
class OptimizeContext:
    """Everything an optimizer run needs."""

    spec: ProgramSpec
    trainset: list[dspy.Example]
    valset: list[dspy.Example]
    task_lm: dspy.LM
    prompt_lm: dspy.LM
    teacher_lm: dspy.LM
    reflection_lm: dspy.LM
    base_model: bool  # a small base model behind the completion adapter: demos matter most
    seed: int = 0
    auto: str | None = "light"
    trials: int | None = None
    num_threads: int = 1
    options: dict[str, Any] = field(default_factory=dict)
    adapter: dspy.Adapter | None = None  # the task model's adapter (renders prompts to measure them)
    prompt_budget: PromptBudget | None = None  # how to count a prompt's tokens and how many the model takes
    budget_minutes: float | None = None  # the whole optimization's time limit (None: the optimizer's own default)
    deadline: float | None = None  # time.monotonic() by which compile should end (from budget_minutes)
    instruction_share: float = 0.5  # auto, no budget: the instruction search's time as a share of the demo search's
    reserved_examples: int = 0  # examples evaluated after compile within the same budget (the held-out comparison)

    @property
    def metric(self) -> Callable[..., Any]:
        return self.spec.metric

    @property
    def max_demos(self) -> int:
        """Demos per predictor: many for base models (their accuracy grows with balanced demos), few otherwise."""
        default = 40 if self.base_model else 8
        return int(self.options.get("max_demos", min(default, len(self.trainset))))


class Optimizer(Protocol):
    name: ClassVar[str]

    def parameters(self, ctx: OptimizeContext) -> dict[str, Any]:
        """The DSPy parameters this run uses (recorded with the version)."""
        ...

    def compile(self, student: dspy.Module, ctx: OptimizeContext) -> dspy.Module:
        """Return the optimized program (``student`` is not modified)."""
        ...

    def estimated_calls(self, ctx: OptimizeContext) -> int:
        """A rough count of LM calls, for the progress bar."""
        ...


def balanced_order(ctx: OptimizeContext) -> list[dspy.Example]:
    """The training set ordered round-robin across labels, so any prefix is class-balanced."""
    return balanced_demos(ctx.trainset, len(ctx.trainset), ctx.spec.label_field, ctx.seed)
