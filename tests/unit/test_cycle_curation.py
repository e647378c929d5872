"""The cycle's curation before the gates: the difficulty mix and the dominant source."""

from collections import Counter

import pytest

from ratchet.data.records import ExampleRecord
from ratchet.loop.phases import balance_difficulty, cap_sources

TARGETS = {"easy": 0.3, "medium": 0.5, "hard": 0.2}


def records(easy: int, medium: int, hard: int, source: str = "telemetry") -> list[ExampleRecord]:
    counts = {"easy": easy, "medium": medium, "hard": hard}
    return [ExampleRecord(values={"text": f"{d} {i}"}, signature="s", source=source, difficulty=d, id=f"{d}-{i}")
            for d, n in counts.items() for i in range(n)]


@pytest.mark.parametrize(("easy", "medium", "hard"), [(150, 250, 32), (30, 300, 100), (100, 100, 100), (53, 100, 32)])
def test_the_kept_subset_is_the_largest_inside_half_the_tolerance(easy: int, medium: int, hard: int) -> None:
    kept = balance_difficulty(records(easy, medium, hard), TARGETS, seed=0, minimum=10, tolerance=0.10)
    shares = {d: n / len(kept) for d, n in Counter(r.difficulty for r in kept).items()}
    assert all(abs(shares.get(d, 0) - t) <= 0.05 + 1e-9 for d, t in TARGETS.items()), shares
    for larger in range(len(kept) + 1, easy + medium + hard + 1):  # no larger subset would fit
        fits = all(abs(n - t * larger) <= 0.05 * larger for d, t in TARGETS.items()
                   for n in [min({"easy": easy, "medium": medium, "hard": hard}[d], round(t * larger))])
        assert not fits, larger


def test_a_scarce_difficulty_no_longer_sets_the_size_exactly() -> None:
    kept = balance_difficulty(records(150, 250, 32), TARGETS, seed=0, minimum=10, tolerance=0.10)
    assert len(kept) > 32 / 0.2  # exact targets would stop at 160; the tolerance allows 32 hard at 15 %


def test_exact_targets_and_a_missing_difficulty() -> None:
    kept = balance_difficulty(records(30, 50, 20), TARGETS, seed=0, minimum=10, tolerance=0.0)
    assert Counter(r.difficulty for r in kept) == {"easy": 30, "medium": 50, "hard": 20}
    everything = records(30, 50, 0)
    assert balance_difficulty(everything, TARGETS, seed=0, minimum=10, tolerance=0.1) == everything


def test_the_minimum_keeps_everything() -> None:
    batch = records(5, 90, 5)
    assert balance_difficulty(batch, TARGETS, seed=0, minimum=80, tolerance=0.1) == batch


def test_the_selection_is_seeded() -> None:
    batch = records(150, 250, 32)
    first = [r.id for r in balance_difficulty(batch, TARGETS, seed=1, minimum=10, tolerance=0.1)]
    assert first == [r.id for r in balance_difficulty(batch, TARGETS, seed=1, minimum=10, tolerance=0.1)]
    assert first != [r.id for r in balance_difficulty(batch, TARGETS, seed=2, minimum=10, tolerance=0.1)]


def test_the_dominant_source_is_capped() -> None:
    batch = records(80, 0, 0, source="telemetry") + records(20, 0, 0, source="synthetic")
    for r in batch[80:]:
        r.id = "s" + r.id
    kept = cap_sources(batch, 0.6, seed=0, minimum=10)
    counts = Counter(r.source for r in kept)
    assert counts == {"telemetry": 30, "synthetic": 20}


def test_the_cycle_summary_names_the_interval_level_it_used(capsys) -> None:
    from ratchet.cli.cycle_cmd import print_cycle

    comparison = {"n": 67, "baseline_mean": 0.672, "candidate_mean": 0.866, "mean_difference": 0.194,
                  "ci_low": 0.119, "ci_high": 0.269, "confidence": 0.8, "p_value": 0.0024, "test": "mcnemar-exact"}
    print_cycle({"run_id": "run_x", "dry_run": False, "output_dir": "/tmp/run_x", "success": True, "seconds": 1.0,
                 "signatures": {
        "classify_intent": {"phases": {"evaluate": {"result": {"comparison": comparison, "baseline_version": "base"}}},
                            "errors": [], "candidate_version": "v1"}}})
    out = " ".join(capsys.readouterr().out.split())
    assert "[+0.119, +0.269] (80% paired bootstrap)" in out and "95 %" not in out
