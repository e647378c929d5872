from typing import Any

import pytest

from ratchet.config.settings import DataSettings, GateThresholds
from ratchet.data.gates import SEED_GATES, GateReport, gate_thresholds, run_gates
from ratchet.data.records import ExampleRecord

LEVELS = ["easy"] * 3 + ["medium"] * 5 + ["hard"] * 2  # exactly 30 / 50 / 20


def batch(n: int = 10, *, quality: float | list[float | None] = 90.0, difficulty: list[str | None] | None = None,
          categories: list[str] | None = None, sources: list[str] | None = None,
          completeness: list[str | None] | None = None) -> list[ExampleRecord]:
    levels = difficulty or (LEVELS * (n // 10 + 1))[:n]
    cats = categories or [f"c{i % 3}" for i in range(n)]
    srcs = sources or ["git" if i % 2 else "synthetic" for i in range(n)]
    scores = quality if isinstance(quality, list) else [quality] * n
    records = []
    for i in range(n):
        metadata: dict[str, Any] = {}
        if completeness is not None and completeness[i] is not None:
            metadata["completeness"] = completeness[i]
        records.append(ExampleRecord(values={"text": f"example {i}"}, signature="sig", source=srcs[i],
                                     quality=scores[i], difficulty=levels[i], category=cats[i], metadata=metadata,
                                     id=f"ex{i}"))
    return records


def check(report: GateReport, name: str):
    return next(c for c in report.checks if c.name == name)


def test_seed_table_then_settings_then_default() -> None:
    settings = DataSettings()
    assert gate_thresholds("extract_requirements", settings).min_quality == 70.0
    assert gate_thresholds("generate_guidance", settings).min_quality == 80.0
    completeness = gate_thresholds("validate_completeness", settings)
    assert completeness.min_quality == 75.0 and completeness.completeness_targets == {"complete": 0.4,
                                                                                      "incomplete": 0.6}
    assert all(g.difficulty_targets == {"easy": 0.3, "medium": 0.5, "hard": 0.2} for g in SEED_GATES.values())
    assert gate_thresholds("classify_intent", settings) == settings.default_gate

    settings = DataSettings.model_validate({
        "default_gate": {"min_quality": 60.0, "min_categories": 2},
        "gates": {"validate_completeness": {"min_quality": 90.0}, "classify_intent": {"max_source_share": 0.5}},
    })
    overridden = gate_thresholds("validate_completeness", settings)
    assert overridden.min_quality == 90.0 and overridden.completeness_targets == {"complete": 0.4, "incomplete": 0.6}
    intent = gate_thresholds("classify_intent", settings)
    assert (intent.min_quality, intent.min_categories, intent.max_source_share) == (60.0, 2, 0.5)
    assert gate_thresholds("other", settings).min_quality == 60.0
    assert SEED_GATES["validate_completeness"].min_quality == 75.0  # the built-ins are not modified


def test_a_good_batch_passes_every_check() -> None:
    report = run_gates(batch(), GateThresholds(), signature="sig")
    assert report.passed and not report.failed
    assert [c.name for c in report.checks] == ["min_quality", "difficulty_distribution", "category_diversity",
                                               "source_diversity"]
    data = report.to_dict()
    assert data["passed"] and data["examples"] == 10 and data["failed"] == []
    assert check(report, "difficulty_distribution").actual["shares"] == {"easy": 0.3, "medium": 0.5, "hard": 0.2}


def test_min_quality_names_how_many_and_the_lowest() -> None:
    report = run_gates(batch(quality=[90, 65.5, 69.9, 80, 90, 90, 90, 90, 90, 90]), GateThresholds(min_quality=70))
    result = check(report, "min_quality")
    assert not result.passed and not report.passed
    assert result.expected == 70 and result.actual["below"] == 2 and result.actual["lowest"] == 65.5
    assert result.actual["lowest_id"] == "ex1"
    assert "2 of 10 examples below 70" in result.message and "quality_score=65.5 < 70" in result.message
    assert check(run_gates(batch(quality=70.0), GateThresholds(min_quality=70)), "min_quality").passed


def test_unscored_examples_fail_min_quality() -> None:
    result = check(run_gates(batch(quality=[None] + [90.0] * 9), GateThresholds()), "min_quality")
    assert not result.passed and result.actual["unscored"] == 1 and "ratchet data validate" in result.message


def test_difficulty_distribution_within_tolerance() -> None:
    edge = ["easy"] * 4 + ["medium"] * 4 + ["hard"] * 2  # 40 / 40 / 20: each exactly at ±10 %
    assert check(run_gates(batch(difficulty=edge), GateThresholds()), "difficulty_distribution").passed
    skewed = ["easy"] * 6 + ["medium"] * 3 + ["hard"]
    result = check(run_gates(batch(difficulty=skewed), GateThresholds()), "difficulty_distribution")
    assert not result.passed
    assert "easy 60% (target 30% ± 10%)" in result.message and "medium 30% (target 50% ± 10%)" in result.message
    assert "hard" not in result.message.split(":", 1)[1]  # 10 % is within 20 % ± 10 %
    assert result.expected == {"targets": {"easy": 0.3, "medium": 0.5, "hard": 0.2}, "tolerance": 0.1}
    missing = check(run_gates(batch(difficulty=[None, *LEVELS[1:]]), GateThresholds()), "difficulty_distribution")
    assert not missing.passed and "1 of 10 examples have no difficulty" in missing.message


def test_completeness_only_when_targets_are_set() -> None:
    thresholds = GateThresholds(completeness_targets={"complete": 0.4, "incomplete": 0.6})
    good = ["complete"] * 4 + ["incomplete"] * 6
    assert "completeness_distribution" not in [c.name for c in run_gates(batch(), GateThresholds()).checks]
    assert check(run_gates(batch(completeness=good), thresholds), "completeness_distribution").passed
    skewed = check(run_gates(batch(completeness=["complete"] * 8 + ["incomplete"] * 2), thresholds),
                   "completeness_distribution")
    assert not skewed.passed and "complete 80% (target 40% ± 10%)" in skewed.message
    assert skewed.actual["counts"] == {"complete": 8, "incomplete": 2}
    unmarked = check(run_gates(batch(completeness=[None] * 2 + good[2:]), thresholds), "completeness_distribution")
    assert not unmarked.passed and "2 of 10 examples have no completeness" in unmarked.message
    stray = check(run_gates(batch(completeness=["partial", *good[1:]]), thresholds), "completeness_distribution")
    assert not stray.passed and "'partial'" in stray.message


def test_category_diversity() -> None:
    two = check(run_gates(batch(categories=["a", "b"] * 5), GateThresholds()), "category_diversity")
    assert not two.passed and two.actual["categories"] == 2 and "need at least 3" in two.message
    assert check(run_gates(batch(categories=["a", "b"] * 5), GateThresholds(min_categories=2)),
                 "category_diversity").passed


@pytest.mark.parametrize(("sources", "passed"), [
    (["git"] * 10, False),
    (["git"] * 9 + ["synthetic"], False),
    (["git"] * 8 + ["synthetic"] * 2, True),  # exactly 80 %
])
def test_source_diversity(sources: list[str], passed: bool) -> None:
    result = check(run_gates(batch(sources=sources), GateThresholds()), "source_diversity")
    assert result.passed is passed
    assert "'git'" in result.message and result.actual["counts"]["git"] == sources.count("git")


def test_no_examples_fails() -> None:
    report = run_gates([], GateThresholds())
    assert not report.passed and report.examples == 0
    assert all("no examples" in c.message or not c.passed for c in report.checks)
