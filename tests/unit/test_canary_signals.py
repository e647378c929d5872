"""The canary signals: the rollout trigger (paired, same pass), production's degradation, the runs they read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import update

from ratchet.config import CanarySettings, Settings
from ratchet.evaluation import fewshot_program
from ratchet.evaluation.paired import compare_paired
from ratchet.monitor.canary import MIN_TRAILING, assess_degradation, production_degradation
from ratchet.programs import load_programs
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.rollout.canary import canary_check, experiment_canary_check, paired_scores
from ratchet.rollout.experiments import Experiment
from ratchet.store.canaries import (
    CanaryRun,
    canary_history,
    last_canary_runs,
    latest_pass,
    prune_canary_runs,
    record_canary_runs,
)
from ratchet.store.db import StateDB
from ratchet.store.tables import canary_runs

SIG = "classify_intent"


def run(version: str, scores: list[float], *, probe_set: str = "p1", pass_id: str = "a", at: float = 1000.0,
        signature: str = SIG) -> CanaryRun:
    """A run whose probe i scored ``scores[i]``."""
    keyed = {f"probe{i:03d}": s for i, s in enumerate(scores)}
    return CanaryRun(signature=signature, version=version, at=at, probe_set=probe_set, n=len(scores),
                     score=sum(scores) / len(scores), scores=keyed, pass_id=pass_id)


# -- the rollout trigger (pure) ------------------------------------------------------------------------------------


def test_a_candidate_that_answers_wrongly_on_the_same_probes_triggers_a_rollback() -> None:
    baseline = run("v1", [1.0] * 45 + [0.0] * 5)
    candidate = run("v2", [1.0] * 35 + [0.0] * 15)  # wrong on 10 probes the baseline gets right
    check = canary_check(baseline, candidate, max_drop=0.05, alpha=0.05, min_probes=20)
    assert check.trigger == "canary" and check.fired
    assert check.estimate == pytest.approx(-0.2) and check.high < 0 and check.n_candidate == 50
    assert "0.700 vs baseline 0.900 on the same 50 probes: -20.0 points" in check.message
    assert "10 probes worse, 0 better, mcnemar-exact" in check.message


def test_the_trigger_needs_the_drop_above_the_threshold_and_the_exact_test_not_only_the_bootstrap() -> None:
    baseline = run("v1", [1.0] * 50)
    few = run("v2", [1.0] * 46 + [0.0] * 4)  # 4 of 50 worse: 8 points, but 4 discordant pairs prove little
    comparison = compare_paired(*paired_scores(baseline.scores, few.scores), confidence=0.95)
    assert comparison.ci_high < 0 and comparison.p_value == pytest.approx(0.125)  # the bootstrap alone would fire
    assert not canary_check(baseline, few).fired
    assert canary_check(baseline, run("v2", [1.0] * 43 + [0.0] * 7)).fired  # 7 of 50: p = 0.016
    big_base, small_drop = run("v1", [1.0] * 1000), run("v2", [1.0] * 960 + [0.0] * 40)
    assert compare_paired(*paired_scores(big_base.scores, small_drop.scores)).p_value < 1e-6
    assert not canary_check(big_base, small_drop, max_drop=0.05).fired  # real, but 4 points is below 5
    assert canary_check(big_base, small_drop, max_drop=0.03).fired
    better = canary_check(run("v1", [0.0] * 50), run("v2", [1.0] * 50))
    assert not better.fired and better.estimate == 1.0


def test_the_trigger_waits_for_both_runs_the_same_probes_and_enough_of_them() -> None:
    baseline, candidate = run("v1", [1.0] * 30), run("v2", [0.0] * 30)
    assert "waiting for a canary run" in canary_check(None, candidate).message
    assert not canary_check(baseline, None).fired
    other = run("v2", [0.0] * 30, probe_set="p2")
    assert "same probe set" in canary_check(baseline, other).message and not canary_check(baseline, other).fired
    assert canary_check(baseline, candidate, min_probes=30).fired
    check = canary_check(baseline, candidate, min_probes=31)
    assert not check.fired and "30 scored by both versions; need 31" in check.message
    partial = CanaryRun(SIG, "v2", 1.0, "p1", 10, 0.0, scores={f"probe{i:03d}": 0.0 for i in range(10)})
    assert "10 scored by both" in canary_check(baseline, partial).message  # only common probes pair


# -- runs in the state database ------------------------------------------------------------------------------------


@pytest.fixture
def db(state_db_url: str):
    db = StateDB(state_db_url)
    yield db
    db.dispose()


def test_latest_pass_pairs_the_newest_pass_that_scored_both_versions_on_the_same_probes(db: StateDB) -> None:
    record_canary_runs(db, [run("v1", [1.0] * 5, pass_id="p-old", at=100),
                            run("v2", [0.0] * 5, pass_id="p-old", at=101),
                            run("v1", [1.0] * 5, pass_id="p-new", at=200),  # v2 failed to load in this pass
                            run("v1", [1.0] * 5, pass_id="p-set", at=300, probe_set="p2"),
                            run("v2", [1.0] * 5, pass_id="p-set", at=301, probe_set="p3")])
    baseline, candidate = latest_pass(db, SIG, "v1", "v2")
    assert (baseline.pass_id, candidate.pass_id, candidate.score, baseline.at) == ("p-old", "p-old", 0.0, 100)
    assert candidate.scores == {f"probe{i:03d}": 0.0 for i in range(5)}
    assert latest_pass(db, SIG, "v1", "v2", since=150) is None  # runs before the experiment started do not count
    assert latest_pass(db, "other", "v1", "v2") is None
    newest = last_canary_runs(db)
    assert {k: r.pass_id for k, r in newest.items()} == {(SIG, "v1"): "p-set", (SIG, "v2"): "p-set"}
    assert [r.at for r in canary_history(db, SIG, "v1", limit=2)] == [300, 200]
    assert [r.at for r in canary_history(db, SIG, None, limit=10, probe_set="p1")] == [200, 101, 100]
    assert prune_canary_runs(db, older_than=250) == 3
    assert [r.at for r in canary_history(db, SIG, None, limit=10)] == [301, 300]


def test_a_damaged_scores_column_still_shows_its_mean_and_pairs_with_nothing(db: StateDB) -> None:
    record_canary_runs(db, [run("v1", [1.0] * 5), run("v2", [0.0] * 5)])
    with db.begin(write=True) as conn:
        conn.execute(update(canary_runs).where(canary_runs.c.version == "v2").values(scores="{not json"))
    baseline, candidate = latest_pass(db, SIG, "v1", "v2")
    assert candidate.score == 0.0 and candidate.scores == {}
    assert "0 scored by both" in canary_check(baseline, candidate).message


def test_experiment_canary_check_reads_the_experiments_pass(db: StateDB) -> None:
    exp = Experiment(experiment_id="exp_1", signature=SIG, baseline_version="v1", candidate_version="v2",
                     status="running", stages=[10, 100], stage_index=0, stage_started_at=0.0, min_stage_minutes=0,
                     min_stage_requests=1, salt="exp_1", created_at=500.0)
    canary = CanarySettings()
    record_canary_runs(db, [run("v1", [1.0] * 30, at=400), run("v2", [0.0] * 30, at=401)])
    assert not experiment_canary_check(db, exp, canary).fired  # that pass is older than the experiment
    record_canary_runs(db, [run("v1", [1.0] * 30, pass_id="b", at=600), run("v2", [0.0] * 30, pass_id="b", at=601)])
    assert experiment_canary_check(db, exp, canary).fired
    canary.enabled = False
    assert "canaries are off" in experiment_canary_check(db, exp, canary).message


# -- degradation ---------------------------------------------------------------------------------------------------


def trailing(db: StateDB, version: str, runs: list[list[float]], *, start: float = 1000.0, probe_set: str = "p1"
             ) -> None:
    record_canary_runs(db, [run(version, scores, pass_id=f"t{i}", at=start + i, probe_set=probe_set)
                            for i, scores in enumerate(runs)])


def test_production_that_drops_against_its_own_trailing_runs_is_degraded_by_an_interval(db: StateDB) -> None:
    canary = CanarySettings(trailing_runs=4)
    steady = [1.0] * 45 + [0.0] * 5
    trailing(db, "v1", [steady, steady, steady, [1.0] * 30 + [0.0] * 20])  # the oldest of 4 falls out of the window
    assert production_degradation(db, SIG, "v1", canary).status == "degraded"  # 30/50 against 45/50 ×3
    trailing(db, "v1", [steady], start=2000)
    held = production_degradation(db, SIG, "v1", canary)
    assert held.status == "ok" and held.trailing_runs == 4 and held.n == 50
    assert held.drop == pytest.approx((45 * 3 + 30) / 200 - 0.9)  # per-probe means of the trailing runs
    trailing(db, "v1", [[1.0] * 20 + [0.0] * 30], start=3000)
    dropped = production_degradation(db, SIG, "v1", canary)
    assert dropped.degraded and dropped.ci_high < 0 and dropped.drop > 0.05
    assert dropped.latest.at == 3000 and dropped.latest_score == pytest.approx(0.4)
    data = dropped.to_dict()
    assert data["status"] == "degraded" and data["latest_run"]["score"] == 0.4
    assert "production v1 dropped on its canary probes: 0.400 in the newest run" in dropped.message
    assert "over its previous 4 runs" in dropped.message
    assert "threshold: a drop of more than 5 points" in data["message"]


def test_degradation_needs_earlier_runs_on_the_same_probes(db: StateDB) -> None:
    canary = CanarySettings()
    assert production_degradation(db, SIG, "v1", canary).reason == "no canary run yet"
    trailing(db, "v1", [[1.0] * 30] * MIN_TRAILING)
    trailing(db, "v1", [[0.0] * 30], start=2000, probe_set="p2")  # regenerated probes: a new history starts
    verdict = production_degradation(db, SIG, "v1", canary)
    assert verdict.status == "not_enough_data" and not verdict.judged and verdict.drop is None
    assert verdict.reason == "0 earlier canary run(s) on these probes (needs 2)"
    few = CanarySettings(min_probes=31)
    trailing(db, "v1", [[1.0] * 30] * 2, start=3000, probe_set="p2")
    assert "30 probes scored in the newest and earlier runs (needs 31)" in production_degradation(
        db, SIG, "v1", few).reason


def test_assess_degradation_judges_each_signatures_production_version(tmp_path: Path, db: StateDB) -> None:
    settings = Settings(home=tmp_path / "home", database_url=db.url)
    registry = load_programs(settings)
    spec = registry.get(SIG)
    VersionStore(settings.home_dir).save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
    ProductionPointers(db, VersionStore(settings.home_dir)).set(SIG, "v1", actor="test", reason="test")
    trailing(db, "base", [[1.0] * 30] * 3 + [[0.0] * 30])  # base dropped, but base is no longer production
    trailing(db, "v1", [[1.0] * 30] * 4, start=2000)
    found = assess_degradation(settings, registry, db=db)
    assert set(found) == set(registry.names())
    assert found[SIG].version == "v1" and found[SIG].status == "ok"
    assert all(v.status == "not_enough_data" for name, v in found.items() if name != SIG)
    assert json.dumps({k: v.to_dict() for k, v in found.items()})  # serialisable as the check's summary
