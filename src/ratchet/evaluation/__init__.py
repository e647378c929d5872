"""Evaluation: score programs on labelled data, per example; few-shot program builders."""

from ratchet.evaluation.fewshot import attach_demos, fewshot_program, training_examples
from ratchet.evaluation.runner import EvalReport, ExampleResult, evaluate_program, prediction_tokens

__all__ = [
    "EvalReport",
    "ExampleResult",
    "attach_demos",
    "evaluate_program",
    "fewshot_program",
    "prediction_tokens",
    "training_examples",
]
