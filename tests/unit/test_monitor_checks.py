"""Each monitoring check's conditions, from crafted state: run summaries, experiments, datasets, counters."""

import json
import time
from pathlib import Path

import pytest
from monitor_helpers import DAY, SIG, count, experiment, records, write_run

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.monitor import AlertDispatcher
from ratchet.monitor.alerts import Alert
from ratchet.monitor.checks import (
    check_ab_tests,
    check_dataset_quality,
    check_orchestration,
    check_slo,
    run_checks,
)
from ratchet.monitor.checks import runner as runner_module
from ratchet.programs import ProgramRegistry, load_programs
from ratchet.rollout.experiments import ExperimentStore
from ratchet.store.db import StateDB


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.monitor.retry_backoff_s = 0
    return settings


@pytest.fixture
def db(settings: Settings) -> StateDB:
    return StateDB.connect(settings)


@pytest.fixture(scope="module")
def registry() -> ProgramRegistry:
    return load_programs(Settings())


# -- orchestration ---------------------------------------------------------------------------------------


def test_orchestration_no_runs_is_info(settings: Settings) -> None:
    result = check_orchestration(settings)
    (alert,) = result.alerts
    assert (alert.level, alert.title) == ("info", "No Orchestration Runs")
    assert result.scopes == ["orchestration"]


def test_orchestration_consecutive_failures(settings: Settings) -> None:
    now = time.time()
    write_run(settings, "run_20261001_020000", success=True, started=now - 60 * DAY, deployed=[SIG], improvement=7.5)
    write_run(settings, "run_20261101_020000", success=False, started=now - 30 * DAY,
              errors=[f"{SIG}: gate: quality gates failed: quality=65.0 < 70.0"])
    assert check_orchestration(settings, now=now).alerts == []  # one failure: below the threshold of 2
    write_run(settings, "run_20261124_020000", success=False, started=now - DAY, dry_run=True, errors=["dry"])
    bad = settings.home_dir / "runs" / "run_20261124_030000"
    bad.mkdir()
    (bad / "orchestration_summary.json").write_text("{torn")
    write_run(settings, "run_20261125_020000", success=False, started=now - 3600,
              errors=[f"{SIG}: collect: collected: 10 examples, target: 30"])
    write_run(settings, "run_20261125_030000", success=None, started=now - 60)  # in progress: not counted yet
    result = check_orchestration(settings, now=now)
    (alert,) = result.alerts
    assert alert.to_dict()["level"] == "error" and alert.title == "Orchestration Run Failures"
    assert alert.message == "Orchestration has failed 2 consecutive times"
    assert alert.details["run_id"] == "run_20261125_020000" and alert.details["consecutive_failures"] == 2
    assert alert.details["last_error"] == f"{SIG}: collect: collected: 10 examples, target: 30"
    assert alert.details["unreadable_runs"] == 1
    assert result.summary["last_run"] == "run_20261125_030000" and result.summary["unreadable"] == 1


def test_an_interrupted_run_counts_as_failed(settings: Settings) -> None:
    now = time.time()
    write_run(settings, "run_20261101_020000", success=False, started=now - 3 * DAY, errors=["x"])
    write_run(settings, "run_20261102_020000", success=None, started=now - 2 * DAY, age_s=2 * DAY)
    (alert,) = check_orchestration(settings, now=now).alerts
    assert alert.details["consecutive_failures"] == 2 and "did not finish" in alert.details["last_error"]


def test_stale_optimization(settings: Settings) -> None:
    now = time.time()
    write_run(settings, "run_20260701_020000", success=True, started=now - 130 * DAY, deployed=[SIG],
              improvement=6.0)
    write_run(settings, "run_20260801_020000", success=True, started=now - 100 * DAY, deployed=[],
              improvement=1.0)
    write_run(settings, "run_20261101_020000", success=True, started=now - 20 * DAY, deployed=[], improvement=0.5)
    (alert,) = check_orchestration(settings, now=now).alerts
    assert (alert.level, alert.title) == ("warning", "Stale Optimization")
    assert alert.details["last_improvement_run"] == "run_20260701_020000" and alert.details["runs_since"] == 2
    assert alert.details["last_improvement_percent"] == 6.0
    settings.monitor.optimization_no_improvement_months = 5
    assert check_orchestration(settings, now=now).alerts == []


def test_stale_optimization_without_any_deployment(settings: Settings) -> None:
    now = time.time()
    write_run(settings, "run_20260801_020000", success=True, started=now - 100 * DAY, improvement=1.0)
    (alert,) = check_orchestration(settings, now=now).alerts
    assert alert.title == "Stale Optimization" and alert.details["last_improvement_run"] is None
    assert check_orchestration(settings, now=now - 20 * DAY).alerts == []  # 80 days: within 3 months


# -- A/B tests ------------------------------------------------------------------------------------------


def test_rollback_is_a_warning_event_with_reason_and_final_traffic(settings: Settings, db: StateDB) -> None:
    store = ExperimentStore(db)
    exp = store.create(experiment("intent_v2", stage_index=1), actor="test")
    assert check_ab_tests(settings, db=db).events == []
    store.transition(exp, "rollback", actor="test", changes={"status": "rolled_back",
                                                              "reason": "Error rate increased >5%"},
                     reason="Error rate increased >5%")
    result = check_ab_tests(settings, db=db)
    (event,) = result.events
    assert event.to_dict()["level"] == "warning" and event.title == "A/B Test Rolled Back"
    assert event.message == "Experiment intent_v2 was rolled back"
    assert {k: event.details[k] for k in ("experiment_id", "signature", "reason", "final_traffic_percent")} == {
        "experiment_id": "intent_v2", "signature": SIG, "reason": "Error rate increased >5%",
        "final_traffic_percent": 25}
    assert result.alerts == [] and result.summary["rolled_back"] == 1
    later = time.time() + 8 * DAY
    assert check_ab_tests(settings, db=db, now=later).events == []  # an old rollback…
    assert len(check_ab_tests(settings, db=db, now=later, since=time.time() - 60).events) == 1  # …unless unchecked


def test_long_running_experiment_is_info(settings: Settings, db: StateDB) -> None:
    ExperimentStore(db).create(experiment("intent_v2"), actor="test")
    assert check_ab_tests(settings, db=db, now=time.time() + 6 * DAY).alerts == []
    (alert,) = check_ab_tests(settings, db=db, now=time.time() + 8 * DAY).alerts
    assert (alert.level, alert.title) == ("info", "Long-Running A/B Test")
    assert alert.details["experiment_id"] == "intent_v2" and alert.details["running_days"] >= 8


def test_traffic_mismatch(settings: Settings, db: StateDB) -> None:
    store = ExperimentStore(db)
    skewed = store.create(experiment("intent_v2"), actor="test")
    fine = store.create(experiment("booking_v2", signature="extract_booking"), actor="test")
    at = skewed.stage_started_at + 61  # counters are per minute: the stage's first whole minute
    count(db, SIG, "v1", "baseline", 50, at=at)
    count(db, SIG, "v2", "candidate", 100, at=at)
    count(db, SIG, "v2", "candidate", 500, at=skewed.stage_started_at - 120)  # before the stage: ignored
    count(db, "extract_booking", "v1", "baseline", 95, at=at)
    count(db, "extract_booking", "v2", "candidate", 12, at=at)
    (alert,) = check_ab_tests(settings, db=db).alerts
    assert (alert.level, alert.title) == ("warning", "A/B Traffic Mismatch")
    assert alert.details["experiment_id"] == "intent_v2"
    assert alert.details["configured_percent"] == 10.0 and alert.details["observed_percent"] == 66.7
    assert (alert.details["baseline_requests"], alert.details["candidate_requests"]) == (50, 100)
    assert fine.live


# -- dataset quality ----------------------------------------------------------------------------------


def test_dataset_quality_degradation(settings: Settings, registry: ProgramRegistry) -> None:
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    v1 = store.create(SIG, records(0, 30, 77.8), source="git").version
    assert check_dataset_quality(settings, registry=registry).alerts == []  # one version: nothing to compare
    v2 = store.create(SIG, records(30, 60, 65.8), source="git").version
    (settings.home_dir / "training_data" / "unregistered_sig").mkdir()
    result = check_dataset_quality(settings, registry=registry)
    (alert,) = result.alerts
    assert alert.to_dict() | {"timestamp": None} == {
        "level": "warning", "title": "Dataset Quality Degradation", "timestamp": None,
        "message": f"Quality score dropped 15.4% for {SIG}",
        "details": {"signature": SIG, "latest_version": v2, "previous_version": v1, "latest_quality": 65.8,
                    "previous_quality": 77.8, "drop_percent": 15.4, "threshold_percent": 10.0}}
    assert result.summary["unknown_signatures"] == ["unregistered_sig"] and result.scopes == ["dataset_quality"]
    one = check_dataset_quality(settings, SIG, registry=registry)
    assert len(one.alerts) == 1 and one.scopes == [f"dataset_quality/quality_drop/{SIG}"]
    settings.monitor.dataset_quality_drop_threshold = 0.2
    assert check_dataset_quality(settings, registry=registry).alerts == []
    settings.monitor.dataset_quality_drop_threshold = 0.1
    store.create(SIG, records(60, 90, 70.0), source="git")  # recovered
    assert check_dataset_quality(settings, registry=registry).alerts == []


# -- live SLOs ----------------------------------------------------------------------------------------------


def test_slo_success_rate_per_signature_and_arm(settings: Settings, db: StateDB) -> None:
    count(db, SIG, "v1", "baseline", 100, cost_usd=0.2)
    count(db, SIG, "v2", "candidate", 20, errors=15)
    count(db, "extract_booking", "v1", "baseline", 30, latency_s=2.0)
    count(db, "tiny", "v1", "baseline", 5, errors=5)  # too few requests to judge
    result = check_slo(settings, db=db)
    found = {(a.title, a.details["signature"], a.details.get("arm", "all")): a for a in result.alerts}
    assert set(found) == {("Low Success Rate", SIG, "all"), ("Low Success Rate", SIG, "candidate"),
                          ("High Cost", SIG, "all"), ("High Latency", "extract_booking", "all"),
                          # $0.20 a request and 2 s at every quantile also break the per-request and p50/p99 limits
                          ("High Cost per Request", SIG, "all"), ("High Cost per Request", SIG, "baseline"),
                          ("High p50 Latency", "extract_booking", "all"),
                          ("High p99 Latency", "extract_booking", "all")}
    overall = found["Low Success Rate", SIG, "all"]
    assert overall.level == "error" and overall.details["success_rate"] == 0.875
    assert overall.details["errors_by_type"] == {"timeout": 15}
    candidate = found["Low Success Rate", SIG, "candidate"]
    assert candidate.level == "critical" and candidate.details["success_rate"] == 0.25
    assert candidate.condition == f"slo/success_rate/{SIG}/candidate"
    assert found["High Cost", SIG, "all"].details["cost_per_hour_usd"] == 20.0
    assert found["High Latency", "extract_booking", "all"].details["latency_p95_ms"] > 1000
    assert result.summary["signatures"][SIG]["baseline"]["requests"] == 100
    # No traffic in the window: nothing at all.
    assert check_slo(settings, db=db, now=time.time() + 3 * 3600).alerts == []


def test_slo_latency_quantiles_each_have_their_threshold(settings: Settings, db: StateDB) -> None:
    count(db, SIG, "v1", "baseline", 50, latency_s=0.7)  # p50 ≈ p95 ≈ p99 ≈ 0.7-0.8 s

    def titles() -> dict[str, Alert]:
        return {a.title: a for a in check_slo(settings, db=db).alerts}

    p50 = titles()["High p50 Latency"]
    assert set(titles()) == {"High p50 Latency"}  # over 500 ms, under 1000 and 2000 ms
    assert p50.level == "warning" and p50.condition == f"slo/latency_p50/{SIG}/all"
    assert p50.details["threshold_ms"] == 500.0 and 700 <= p50.details["latency_p50_ms"] <= 800
    assert "p50 latency" in p50.message and "threshold 500 ms" in p50.message
    settings.thresholds.latency_p50_ms = 900.0
    settings.thresholds.latency_p99_ms = 600.0
    p99 = titles()["High p99 Latency"]
    assert set(titles()) == {"High p99 Latency"}
    assert p99.condition == f"slo/latency_p99/{SIG}/all" and p99.details["threshold_ms"] == 600.0
    settings.thresholds.latency_p95_ms = 650.0
    assert set(titles()) == {"High Latency", "High p99 Latency"}


def test_slo_tokens_and_cost_per_answered_request(settings: Settings, db: StateDB) -> None:
    # 30 answered requests of 1500 + 600 tokens at $0.06, and 20 failures that used nothing.
    count(db, SIG, "v1", "baseline", 50, errors=20, tokens_in=1500, tokens_out=600, cost_usd=0.06)
    count(db, "tiny", "v1", "baseline", 9, tokens_in=5000, cost_usd=1.0)  # too few answered requests to judge
    settings.thresholds.min_success_rate = 0.0
    found = {a.title: a for a in check_slo(settings, db=db).alerts}
    assert set(found) == {"High Token Usage", "High Cost per Request"}
    tokens = found["High Token Usage"]
    assert (tokens.level, tokens.condition) == ("warning", f"slo/tokens_per_request/{SIG}/all")
    assert tokens.details == {"signature": SIG, "tokens_per_request": 2100.0, "tokens": 63000, "requests": 30,
                              "threshold_tokens": 2000.0, "window_minutes": 60.0}
    cost = found["High Cost per Request"]
    assert cost.details["cost_per_request_usd"] == pytest.approx(0.06) and cost.details["threshold_usd"] == 0.05
    assert cost.condition == f"slo/cost_per_request/{SIG}/all" and "$0.0600 per request" in cost.message
    summary = check_slo(settings, db=db).summary["signatures"][SIG]["all"]
    assert (summary["tokens"], summary["tokens_per_request"]) == (63000, 2100.0)
    settings.thresholds.max_tokens_per_request = 2500.0
    settings.thresholds.max_cost_per_request_usd = 0.0  # 0 disables
    assert check_slo(settings, db=db).alerts == []


def test_slo_per_request_limits_judge_each_arm_of_an_experiment(settings: Settings, db: StateDB) -> None:
    count(db, SIG, "v1", "baseline", 100, tokens_in=400, tokens_out=100)
    count(db, SIG, "v2", "candidate", 20, tokens_in=2800, tokens_out=200)  # 40 demos in the prompt
    (alert,) = check_slo(settings, db=db).alerts  # all arms: 110000 / 120 ≈ 917 tokens, under the limit
    assert (alert.title, alert.details["arm"], alert.details["tokens_per_request"]) == ("High Token Usage",
                                                                                      "candidate", 3000.0)
    assert alert.condition == f"slo/tokens_per_request/{SIG}/candidate"


# -- running checks ------------------------------------------------------------------------------------


def test_run_checks_exit_codes_by_worst_level(settings: Settings, db: StateDB, registry: ProgramRegistry) -> None:
    run = run_checks(settings, ["orchestration"], db=db, registry=registry)
    assert (run.worst_level, run.exit_code, run.dispatched) == ("info", 0, False)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    store.create(SIG, records(0, 30, 80.0), source="git")
    store.create(SIG, records(30, 60, 60.0), source="git")
    assert run_checks(settings, ["dataset_quality"], db=db, registry=registry).exit_code == 1
    now = time.time()
    for i in (1, 2):
        write_run(settings, f"run_2026110{i}_020000", success=False, started=now - i * DAY, errors=["boom"])
    assert run_checks(settings, ["orchestration", "dataset_quality"], db=db, registry=registry).exit_code == 2
    count(db, SIG, "v1", "baseline", 20, errors=15)
    run = run_checks(settings, None, db=db, registry=registry)
    assert (run.worst_level, run.exit_code) == ("critical", 3)
    assert [r.name for r in run.results] == ["orchestration", "ab_tests", "controller", "dataset_quality", "slo",
                                             "drift", "canary", "audit", "keys", "annotation", "golden"]
    with pytest.raises(ValueError, match="unknown check"):
        run_checks(settings, ["nope"])


def test_a_failing_check_becomes_an_alert_and_the_others_still_run(
        settings: Settings, db: StateDB, registry: ProgramRegistry, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("database on fire")

    monkeypatch.setattr(runner_module, "check_slo", broken)
    dispatcher = AlertDispatcher.from_settings(settings)
    run = run_checks(settings, ["slo", "orchestration"], dispatcher, db=db, registry=registry)
    failed, orchestration = run.results
    assert failed.error == "RuntimeError: database on fire"
    (alert,) = failed.alerts
    assert (alert.level, alert.title, alert.details["check"]) == ("error", "Monitoring Check Failed", "slo")
    assert orchestration.alerts[0].title == "No Orchestration Runs"
    assert run.exit_code == 2 and run.dispatched
    assert {d.alert.title: d.action for d in run.deliveries} == {"Monitoring Check Failed": "new",
                                                                 "No Orchestration Runs": "new"}
    assert all(d.delivered for d in run.deliveries)
    monkeypatch.undo()
    healed = run_checks(settings, ["slo"], dispatcher, db=db, registry=registry)
    assert [(d.action, d.alert.title) for d in healed.deliveries] == [("resolved", "Resolved: Monitoring Check Failed")]
    state = json.loads((settings.home_dir / "monitoring_state.json").read_text())
    assert set(state["checks"]) == {"slo", "orchestration"} and len(state["active"]) == 1
