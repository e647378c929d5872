"""Evaluation: score programs on labelled data, per example; few-shot program builders; paired comparisons."""

from ratchet.evaluation.fewshot import attach_demos, fewshot_program, training_examples
from ratchet.evaluation.paired import PairedComparison, compare_paired
from ratchet.evaluation.runner import EvalReport, ExampleResult, evaluate_program, prediction_tokens

__all__ = [
    "EvalReport",
    "ExampleResult",
    "PairedComparison",
    "attach_demos",
    "compare_paired",
    "evaluate_program",
    "fewshot_program",
    "prediction_tokens",
    "training_examples",
]
