"""Quality gates: the thresholds a batch of examples must meet before it joins a dataset.

Thresholds of a signature: seed 001's table for its signatures (:data:`SEED_GATES`),
else ``[data.default_gate]``; the fields a ``[data.gates.<signature>]`` table sets override
either. Five checks, each reported with what was expected and what was found:

``min_quality``
    every example's quality score ≥ ``min_quality`` (unscored examples fail it);
``difficulty_distribution``
    the share of each difficulty within ``difficulty_tolerance`` of its target;
``completeness_distribution``
    only when ``completeness_targets`` is set: the shares of ``_meta.metadata["completeness"]``
    (``complete``/``incomplete``) within the same tolerance; an example without it fails the check;
``category_diversity``
    at least ``min_categories`` distinct categories;
``source_diversity``
    no single source above ``max_source_share`` of the examples.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet.config.settings import DataSettings, GateThresholds
from ratchet.data.records import DIFFICULTIES, ExampleRecord

__all__ = ["COMPLETENESS_VALUES", "SEED_GATES", "GateCheck", "GateReport", "gate_thresholds", "run_gates"]

COMPLETENESS_VALUES = ("complete", "incomplete")
EPSILON = 1e-9  # shares are compared with a little slack for float rounding (0.3 ± 0.1 includes 0.2)

SEED_GATES: dict[str, GateThresholds] = {
    "extract_requirements": GateThresholds(min_quality=70.0),
    "validate_intent": GateThresholds(min_quality=70.0),
    "validate_completeness": GateThresholds(min_quality=75.0,
                                            completeness_targets={"complete": 0.4, "incomplete": 0.6}),
    "validate_correctness": GateThresholds(min_quality=75.0),
    "generate_guidance": GateThresholds(min_quality=80.0),
}


def gate_thresholds(signature: str, settings: DataSettings) -> GateThresholds:
    """The thresholds of ``signature``: built-in (seed 001) or ``default_gate``, with ``gates.<signature>`` on top."""
    base = SEED_GATES.get(signature, settings.default_gate)
    override = settings.gates.get(signature)
    if override is None:
        return base.model_copy(deep=True)
    return base.model_copy(deep=True, update={name: getattr(override, name) for name in override.model_fields_set})


@dataclass(frozen=True)
class GateCheck:
    """One check: passed or not, what was expected, what was found, and a sentence saying so."""

    name: str
    passed: bool
    expected: Any
    actual: Any
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "expected": self.expected, "actual": self.actual,
                "message": self.message}


@dataclass
class GateReport:
    """The outcome of the gates for one batch."""

    signature: str | None
    examples: int
    thresholds: GateThresholds
    checks: list[GateCheck] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)

    @property
    def failed(self) -> list[GateCheck]:
        return [check for check in self.checks if not check.passed]

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "passed": self.passed, "examples": self.examples,
                "failed": [c.name for c in self.failed], "checks": [c.to_dict() for c in self.checks],
                "thresholds": self.thresholds.model_dump()}


def _pct(share: float) -> str:
    return f"{100 * share:.0f}%"


def _shares(counts: Mapping[str, int], total: int) -> dict[str, float]:
    return {key: round(count / total, 4) for key, count in counts.items()} if total else {}


def _check_quality(records: Sequence[ExampleRecord], minimum: float) -> GateCheck:
    unscored = [r for r in records if r.quality is None]
    low = sorted((r for r in records if r.quality is not None and r.quality < minimum), key=lambda r: r.quality or 0)
    scored = [r.quality for r in records if r.quality is not None]
    actual = {"below": len(low), "unscored": len(unscored), "lowest": min(scored) if scored else None,
              "lowest_id": low[0].id if low else None}
    if not records:
        return GateCheck("min_quality", False, minimum, actual, "no examples")
    problems = []
    if low:
        problems.append(f"{len(low)} of {len(records)} examples below {minimum:g} "
                        f"(lowest: quality_score={low[0].quality:g} < {minimum:g}, example {low[0].id or '?'})")
    if unscored:
        problems.append(f"{len(unscored)} examples have no quality score (run `ratchet data validate` first)")
    if problems:
        return GateCheck("min_quality", False, minimum, actual, "; ".join(problems))
    return GateCheck("min_quality", True, minimum, actual,
                     f"all {len(records)} examples at or above {minimum:g} (lowest {min(scored):g})")


def _check_distribution(name: str, what: str, values: list[str | None], targets: Mapping[str, float],
                        tolerance: float) -> GateCheck:
    total = len(values)
    counts = Counter(v if v is not None else "missing" for v in values)
    shares = _shares(counts, total)
    expected = {"targets": dict(targets), "tolerance": tolerance}
    actual = {"shares": shares, "counts": dict(counts)}
    if not total:
        return GateCheck(name, False, expected, actual, "no examples")
    off = [f"{key} {_pct(shares.get(key, 0.0))} (target {_pct(target)} ± {_pct(tolerance)})"
           for key, target in targets.items() if abs(shares.get(key, 0.0) - target) > tolerance + EPSILON]
    strays = {k: c for k, c in counts.items() if k not in targets and k != "missing"}
    off.extend(f"{count} examples with {what} '{key}' (expected one of {', '.join(targets)})"
               for key, count in strays.items())
    if counts.get("missing"):
        off.append(f"{counts['missing']} of {total} examples have no {what}")
    if off:
        return GateCheck(name, False, expected, actual, f"{what} off target: " + "; ".join(off))
    summary = " / ".join(f"{_pct(shares.get(k, 0.0))} {k}" for k in targets)
    return GateCheck(name, True, expected, actual, f"{what} {summary} within ± {_pct(tolerance)} of target")


def _check_categories(records: Sequence[ExampleRecord], minimum: int) -> GateCheck:
    counts = Counter(r.category for r in records if r.category)
    actual = {"categories": len(counts), "counts": dict(counts.most_common())}
    passed = len(counts) >= minimum
    verdict = "" if passed else f", need at least {minimum}"
    return GateCheck("category_diversity", passed, minimum, actual, f"{len(counts)} categories{verdict}")


def _check_sources(records: Sequence[ExampleRecord], maximum: float) -> GateCheck:
    counts = Counter(r.source for r in records)
    shares = _shares(counts, len(records))
    actual = {"shares": shares, "counts": dict(counts.most_common())}
    if not records:
        return GateCheck("source_diversity", False, maximum, actual, "no examples")
    top, share = max(shares.items(), key=lambda item: item[1])
    passed = share <= maximum + EPSILON
    verdict = "at most" if passed else "above the maximum of"
    return GateCheck("source_diversity", passed, maximum, actual,
                     f"largest source '{top}' is {_pct(share)} of examples, {verdict} {_pct(maximum)}")


def run_gates(records: Sequence[ExampleRecord], thresholds: GateThresholds, *, signature: str | None = None
              ) -> GateReport:
    """Run every check on a batch; the report passes when all of them do."""
    report = GateReport(signature=signature, examples=len(records), thresholds=thresholds)
    report.checks.append(_check_quality(records, thresholds.min_quality))
    difficulties = [r.difficulty if r.difficulty in DIFFICULTIES else None for r in records]
    report.checks.append(_check_distribution("difficulty_distribution", "difficulty", difficulties,
                                             thresholds.difficulty_targets, thresholds.difficulty_tolerance))
    if thresholds.completeness_targets:
        completeness = [_completeness(r) for r in records]
        report.checks.append(_check_distribution("completeness_distribution", "completeness", completeness,
                                                 thresholds.completeness_targets, thresholds.difficulty_tolerance))
    report.checks.append(_check_categories(records, thresholds.min_categories))
    report.checks.append(_check_sources(records, thresholds.max_source_share))
    return report


def _completeness(record: ExampleRecord) -> str | None:
    value = record.metadata.get("completeness")
    return None if value is None else str(value)
