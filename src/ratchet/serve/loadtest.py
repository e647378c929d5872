"""Replay labelled examples as production traffic, in-process or against a running server.

Reports throughput, latency percentiles and errors; with ``feedback_from_labels``
each answer is scored against its label with the program's metric and the score
is sent back as feedback, which is how the quickstart and the rollout tests
generate realistic quality signals.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import dspy
import httpx

from ratchet.config.secrets import mask_url
from ratchet.programs.registry import ProgramSpec
from ratchet.serve.runtime import Runtime

__all__ = ["LoadReport", "compare_to_baseline", "percentile", "run_http", "run_inprocess"]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-quantile (0..1) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


@dataclass
class LoadReport:
    """What a load run measured."""

    signature: str
    target: str
    queries: int
    concurrency: int
    duration_s: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: Counter[str] = field(default_factory=Counter)
    arms: Counter[str] = field(default_factory=Counter)
    versions: Counter[str] = field(default_factory=Counter)  # program versions that answered
    feedback_sent: int = 0
    scores: list[float] = field(default_factory=list, repr=False)

    @property
    def completed(self) -> int:
        return len(self.latencies_ms)

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        lat = self.latencies_ms
        return {
            "signature": self.signature,
            "target": self.target,
            "queries": self.queries,
            "concurrency": self.concurrency,
            "completed": self.completed,
            "duration_s": round(self.duration_s, 3),
            "throughput_rps": round(self.completed / self.duration_s, 2) if self.duration_s else 0.0,
            "latency_ms": {
                "p50": round(percentile(lat, 0.50), 2),
                "p95": round(percentile(lat, 0.95), 2),
                "p99": round(percentile(lat, 0.99), 2),
                "mean": round(statistics.fmean(lat), 2) if lat else 0.0,
            },
            "errors": self.error_count,
            "error_rate": round(self.error_count / self.completed, 4) if self.completed else 0.0,
            "errors_by_type": dict(self.errors),
            "arms": dict(self.arms),
            "versions": dict(self.versions),
            "feedback_sent": self.feedback_sent,
            "mean_score": round(statistics.fmean(self.scores), 4) if self.scores else None,
        }


def compare_to_baseline(report: dict[str, Any], baseline: dict[str, Any], *, max_regression: float = 0.20
                        ) -> dict[str, Any]:
    """Seed 004's rule: flag a p95 latency regression of more than ``max_regression`` over the baseline."""
    base = float(baseline["latency_ms"]["p95"])
    now = float(report["latency_ms"]["p95"])
    change = (now - base) / base if base > 0 else 0.0
    return {"baseline_p95_ms": base, "p95_ms": now, "change": round(change, 4),
            "max_regression": max_regression, "regressed": change > max_regression}


def _labels(spec: ProgramSpec, example: dspy.Example) -> dict[str, Any]:
    """The example's labelled outputs (what a person correcting a wrong answer would send)."""
    return {name: example.get(name) for name in spec.schema.output_names}


def _score(spec: ProgramSpec, example: dspy.Example, outputs: dict[str, Any]) -> float:
    try:
        return float(spec.metric(example, dspy.Prediction(**outputs)))
    except Exception:
        return 0.0


def _schedule(examples: Sequence[dspy.Example], queries: int) -> list[dspy.Example]:
    return [examples[i % len(examples)] for i in range(queries)]


def run_inprocess(runtime: Runtime, spec: ProgramSpec, examples: Sequence[dspy.Example], *, queries: int,
                  concurrency: int, feedback_from_labels: bool = False, corrections: bool = False,
                  user_ids: bool = True, on_done: Callable[[], None] | None = None) -> LoadReport:
    """Send ``queries`` requests through ``runtime.call`` from ``concurrency`` threads.

    With ``feedback_from_labels`` each answer is scored against its label and the score
    sent as feedback; with ``corrections`` too, a wrong answer's feedback carries the label.
    """
    report = LoadReport(spec.name, "in-process", queries, concurrency)
    lock = threading.Lock()

    def one(example: dspy.Example) -> None:
        user = f"user-{uuid.uuid4().hex[:12]}" if user_ids else None
        result = runtime.call(spec.name, example.inputs().toDict(), user_id=user)
        score = None
        if feedback_from_labels and result.success and result.outputs is not None:
            score = _score(spec, example, result.outputs)
            fix = _labels(spec, example) if corrections and score < 1.0 else None
            runtime.feedback(result.request_id, score, fix)
        with lock:
            report.latencies_ms.append(result.latency_ms)
            report.arms[result.arm] += 1
            report.versions[result.version] += 1
            if not result.success:
                report.errors[result.error_type or "internal"] += 1
            if score is not None:
                report.scores.append(score)
                report.feedback_sent += 1
        if on_done:
            on_done()

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(one, _schedule(examples, queries)))
    report.duration_s = time.perf_counter() - started
    return report


async def _run_http(base_url: str, spec: ProgramSpec, examples: Sequence[dspy.Example], *, queries: int,
                    concurrency: int, feedback_from_labels: bool, corrections: bool, timeout_s: float,
                    on_done: Callable[[], None] | None, api_key: str | None = None) -> LoadReport:
    report = LoadReport(spec.name, mask_url(base_url), queries, concurrency)  # printed and saved: no password
    url = f"{base_url.rstrip('/')}/v1/programs/{spec.name}/predict"
    feedback_url = f"{base_url.rstrip('/')}/v1/feedback"
    queue: asyncio.Queue[dspy.Example] = asyncio.Queue()
    for example in _schedule(examples, queries):
        queue.put_nowait(example)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    headers = {"X-API-Key": api_key} if api_key else {}
    async with httpx.AsyncClient(timeout=timeout_s, limits=limits, headers=headers) as client:

        async def worker() -> None:
            while True:
                try:
                    example = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = {"inputs": example.inputs().toDict(), "user_id": f"user-{uuid.uuid4().hex[:12]}"}
                started = time.perf_counter()
                try:
                    response = await client.post(url, json=body)
                    payload = response.json()
                except (httpx.HTTPError, ValueError) as exc:
                    report.latencies_ms.append((time.perf_counter() - started) * 1000)
                    report.errors[f"client:{type(exc).__name__}"] += 1
                    if on_done:
                        on_done()
                    continue
                report.latencies_ms.append((time.perf_counter() - started) * 1000)
                if isinstance(payload, dict) and payload.get("arm"):
                    report.arms[payload["arm"]] += 1
                    report.versions[str(payload.get("version"))] += 1
                if response.status_code != 200:
                    kind = payload.get("error_type") or payload.get("error") if isinstance(payload, dict) else None
                    report.errors[str(kind or f"http_{response.status_code}")] += 1
                elif feedback_from_labels:
                    score = _score(spec, example, payload.get("outputs") or {})
                    report.scores.append(score)
                    body = {"request_id": payload["request_id"], "score": score}
                    if corrections and score < 1.0:
                        body["correction"] = _labels(spec, example)
                    try:
                        sent = await client.post(feedback_url, json=body)
                        if sent.status_code == 202:
                            report.feedback_sent += 1
                        else:
                            report.errors["feedback_rejected"] += 1
                    except httpx.HTTPError:
                        report.errors["feedback_failed"] += 1
                if on_done:
                    on_done()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        report.duration_s = time.perf_counter() - started
    return report


def run_http(base_url: str, spec: ProgramSpec, examples: Sequence[dspy.Example], *, queries: int,
             concurrency: int, feedback_from_labels: bool = False, corrections: bool = False,
             timeout_s: float = 60.0, on_done: Callable[[], None] | None = None,
             api_key: str | None = None) -> LoadReport:
    """Send ``queries`` requests to a Ratchet server at ``base_url`` with ``concurrency`` connections (and
    ``api_key`` as ``X-API-Key``: a key with the ``predict`` role, and ``feedback`` to send feedback)."""
    return asyncio.run(_run_http(base_url, spec, examples, queries=queries, concurrency=concurrency,
                                 feedback_from_labels=feedback_from_labels, corrections=corrections,
                                 timeout_s=timeout_s, on_done=on_done, api_key=api_key))
