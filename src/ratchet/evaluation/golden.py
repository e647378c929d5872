"""Score a program on its signature's golden set, per example keyed by the example's stable input hash.

Used by the daily eval regression (:mod:`ratchet.flywheel.regression`), which pairs today's scores with
the previous run's by input hash, and by the deploy decision (:func:`ratchet.optimize.run.run_optimization`),
which pairs baseline and candidate. Each example also carries a hash of its label: a golden example
relabelled between two runs has the same input hash but is not the same question any more, so a
comparison across runs pairs only examples whose label is unchanged.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dspy

from ratchet.config import Settings
from ratchet.data.golden import GoldenExample, GoldenStore
from ratchet.data.records import input_hash
from ratchet.evaluation.paired import PairedComparison, compare_paired
from ratchet.evaluation.runner import ExampleResult, evaluate_program
from ratchet.lm.setup import LMBundle
from ratchet.programs.registry import ProgramRegistry, ProgramSpec

__all__ = ["GoldenScores", "GoldenSet", "compare_golden", "load_golden_set", "score_golden"]


@dataclass(frozen=True)
class GoldenSet:
    """A signature's latest golden version, ready to score: DSPy examples with their input and label hashes."""

    signature: str
    version: str
    examples: list[dspy.Example]
    hashes: list[str]  # input hash of each example
    labels: list[str]  # hash of each example's output fields

    def __len__(self) -> int:
        return len(self.examples)


@dataclass
class GoldenScores:
    """One program's scores on a golden set: per example (by input hash) and in total."""

    signature: str
    version: str
    golden_version: str
    n: int
    score: float
    parse_failures: int
    errors: int
    seconds: float
    scores: dict[str, float] = field(default_factory=dict)  # input hash → score
    labels: dict[str, str] = field(default_factory=dict)  # input hash → label hash
    failures: dict[str, str] = field(default_factory=dict)  # input hash → "parse" or the error type (failed only)

    def summary(self) -> dict[str, Any]:
        return {"version": self.version, "golden_version": self.golden_version, "n": self.n,
                "score": round(self.score, 6), "parse_failures": self.parse_failures, "errors": self.errors,
                "seconds": round(self.seconds, 2)}

    def examples(self) -> dict[str, dict[str, Any]]:
        """Per input hash: score, label hash and failure (what a later run pairs with)."""
        return {h: {"score": s, "label": self.labels.get(h), "failure": self.failures.get(h)}
                for h, s in self.scores.items()}


def load_golden_set(settings: Settings, registry: ProgramRegistry, signature: str) -> GoldenSet | None:
    """The latest golden version of ``signature`` as DSPy examples; None when it has no golden set."""
    spec = registry.get(signature)
    store = GoldenStore(settings.home_dir, settings.data, registry=registry)
    version = store.latest_version(signature)
    if version is None:
        return None
    golden = store.examples(signature, version)
    if not golden:
        return None
    return GoldenSet(signature=signature, version=version,
                     examples=[e.to_record(signature).to_example(spec.schema) for e in golden],
                     hashes=[e.input_hash(spec.schema) for e in golden],
                     labels=[label_hash(e, spec) for e in golden])


def label_hash(example: GoldenExample, spec: ProgramSpec) -> str:
    """A stable hash of the example's output fields (its label)."""
    return input_hash({name: example.values.get(name) for name in spec.schema.output_names})[:16]


def score_golden(spec: ProgramSpec, program: dspy.Module, golden: GoldenSet, lms: LMBundle, *, version: str,
                 num_threads: int = 1, on_result: Callable[[ExampleResult], None] | None = None) -> GoldenScores:
    """Run ``program`` on every golden example (a failing call scores 0 and is counted), keyed by input hash."""
    started = time.perf_counter()
    with dspy.context(trace=None, disable_history=True):
        report = evaluate_program(program, golden.examples, spec.metric, lm=lms.task, adapter=lms.adapter,
                                  num_threads=num_threads, on_result=on_result)
    scores, failures = {}, {}
    for result in report.results:
        key = golden.hashes[result.index]
        scores[key] = result.score
        if result.error:
            failures[key] = "parse" if result.parse_failure else result.error
    return GoldenScores(signature=spec.name, version=version, golden_version=golden.version, n=report.n,
                        score=report.score, parse_failures=report.parse_failures, errors=report.errors,
                        seconds=time.perf_counter() - started, scores=scores,
                        labels=dict(zip(golden.hashes, golden.labels, strict=True)), failures=failures)


def compare_golden(reference: dict[str, dict[str, Any]], new: dict[str, dict[str, Any]], *,
                   confidence: float = 0.95, seed: int = 0) -> tuple[PairedComparison | None, dict[str, int]]:
    """Pair two per-example score maps (:meth:`GoldenScores.examples`) on the input hashes both scored with the
    same label; returns the comparison of ``new`` against ``reference`` (None when nothing pairs) and what was
    left out: ``only_reference``, ``only_new`` and ``relabelled`` examples."""
    shared = [h for h in new if h in reference]
    paired = [h for h in shared if reference[h].get("label") == new[h].get("label")]
    excluded = {"only_reference": sum(h not in new for h in reference), "only_new": len(new) - len(shared),
                "relabelled": len(shared) - len(paired)}
    if not paired:
        return None, excluded
    comparison = compare_paired([float(reference[h]["score"]) for h in paired],
                                [float(new[h]["score"]) for h in paired], confidence=confidence, seed=seed)
    return comparison, excluded
