"""Evaluation: score programs on labelled data, per example; few-shot program builders; paired comparisons;
scores on a signature's golden set keyed by input hash."""

from ratchet.evaluation.fewshot import attach_demos, fewshot_program, training_examples
from ratchet.evaluation.golden import GoldenScores, GoldenSet, compare_golden, load_golden_set, score_golden
from ratchet.evaluation.paired import PairedComparison, compare_paired
from ratchet.evaluation.runner import EvalReport, ExampleResult, evaluate_program, prediction_tokens

__all__ = [
    "EvalReport",
    "ExampleResult",
    "GoldenScores",
    "GoldenSet",
    "PairedComparison",
    "attach_demos",
    "compare_golden",
    "compare_paired",
    "evaluate_program",
    "fewshot_program",
    "load_golden_set",
    "prediction_tokens",
    "score_golden",
    "training_examples",
]
