"""Score a program on labelled examples, one record per example (score, failure kind, latency, tokens)."""

from __future__ import annotations

import contextvars
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

__all__ = ["EvalReport", "ExampleResult", "evaluate_program", "prediction_tokens"]


@dataclass
class ExampleResult:
    """The outcome of one example."""

    index: int
    score: float
    latency_s: float
    tokens: int = 0
    error: str | None = None  # exception type name when the call failed
    parse_failure: bool = False
    prediction: dict[str, Any] | None = None


@dataclass
class EvalReport:
    """Scores of one program over a data set."""

    n: int
    score: float  # mean metric, 0..1
    parse_failures: int
    errors: int
    seconds_per_call: float  # median
    total_seconds: float
    tokens: int
    results: list[ExampleResult] = field(default_factory=list)

    @property
    def parse_failure_rate(self) -> float:
        return self.parse_failures / self.n if self.n else 0.0

    @property
    def scores(self) -> list[float]:
        return [r.score for r in self.results]

    def summary(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "score": round(self.score, 4),
            "parse_failures": self.parse_failures,
            "parse_failure_rate": round(self.parse_failure_rate, 4),
            "errors": self.errors,
            "seconds_per_call": round(self.seconds_per_call, 4),
            "total_seconds": round(self.total_seconds, 2),
            "tokens": self.tokens,
        }

    def to_dict(self, *, with_results: bool = False) -> dict[str, Any]:
        out = self.summary()
        if with_results:
            out["results"] = [asdict(r) for r in self.results]
        return out


def prediction_tokens(prediction: Any) -> int:
    """Total tokens DSPy tracked for a prediction (0 when usage tracking is off or the call was cached)."""
    getter = getattr(prediction, "get_lm_usage", None)
    usage = getter() if callable(getter) else None
    return sum(int((u or {}).get("total_tokens") or 0) for u in (usage or {}).values())


def evaluate_program(
    program: dspy.Module,
    examples: Sequence[dspy.Example],
    metric: Callable[..., Any],
    *,
    num_threads: int = 1,
    lm: dspy.LM | None = None,
    adapter: dspy.Adapter | None = None,
    on_result: Callable[[ExampleResult], None] | None = None,
) -> EvalReport:
    """Run ``program`` on every example and score it with ``metric(example, prediction)``.

    Unlike ``dspy.Evaluate`` this keeps the failure kind of each example: an
    unparsable completion counts as a parse failure, any other exception as an
    error; both score 0. ``lm``/``adapter`` override DSPy's configured ones.
    """
    overrides: dict[str, Any] = {"track_usage": True}
    if lm is not None:
        overrides["lm"] = lm
    if adapter is not None:
        overrides["adapter"] = adapter

    def run(index: int, example: dspy.Example) -> ExampleResult:
        started = time.perf_counter()
        with dspy.context(**overrides):
            try:
                prediction = program(**example.inputs())
            except AdapterParseError:
                return ExampleResult(index, 0.0, time.perf_counter() - started, error="AdapterParseError",
                                     parse_failure=True)
            except Exception as exc:
                return ExampleResult(index, 0.0, time.perf_counter() - started, error=type(exc).__name__)
        latency = time.perf_counter() - started
        try:
            score = float(metric(example, prediction))
        except Exception as exc:
            return ExampleResult(index, 0.0, latency, error=f"metric:{type(exc).__name__}")
        return ExampleResult(index, score, latency, tokens=prediction_tokens(prediction),
                             prediction=dict(prediction.items()))

    started = time.perf_counter()
    results: list[ExampleResult] = []
    if num_threads <= 1:
        for index, example in enumerate(examples):
            result = run(index, example)
            results.append(result)
            if on_result:
                on_result(result)
    else:
        with ThreadPoolExecutor(max_workers=num_threads) as pool:
            futures = [pool.submit(contextvars.copy_context().run, run, i, ex) for i, ex in enumerate(examples)]
            for future in futures:
                result = future.result()
                results.append(result)
                if on_result:
                    on_result(result)
    total = time.perf_counter() - started
    n = len(results)
    return EvalReport(
        n=n,
        score=sum(r.score for r in results) / n if n else 0.0,
        parse_failures=sum(r.parse_failure for r in results),
        errors=sum(1 for r in results if r.error and not r.parse_failure),
        seconds_per_call=statistics.median(r.latency_s for r in results) if n else 0.0,
        total_seconds=total,
        tokens=sum(r.tokens for r in results),
        results=results,
    )
