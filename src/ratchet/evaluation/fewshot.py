"""Build a program with k class-balanced labelled demos from its training data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import dspy

from ratchet.data.files import labelled_examples
from ratchet.data.sampling import balanced_demos
from ratchet.programs.registry import ProgramSpec

__all__ = ["attach_demos", "fewshot_program", "training_examples"]


def attach_demos(module: dspy.Module, demos: Sequence[dspy.Example]) -> dspy.Module:
    """Give every predictor of ``module`` the same demos (in place); returns the module."""
    for predictor in module.predictors():
        predictor.demos = list(demos)
    return module


def training_examples(spec: ProgramSpec, path: Path | None = None) -> list[dspy.Example]:
    """Labelled examples from ``path``, else from the program's bundled ``train`` data."""
    return labelled_examples(spec, path, split="train").examples


def fewshot_program(spec: ProgramSpec, k: int, *, seed: int = 0, trainset: Sequence[dspy.Example] | None = None
                    ) -> dspy.Module:
    """A fresh instance of the program with ``k`` balanced demos (zero-shot when ``k`` is 0)."""
    module = spec.build()
    if k > 0:
        examples = list(trainset) if trainset is not None else training_examples(spec)
        attach_demos(module, balanced_demos(examples, k, spec.label_field, seed))
    return module
