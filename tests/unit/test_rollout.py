import json
import threading
import time
from pathlib import Path

import pytest

from ratchet.config import Settings
from ratchet.errors import (
    ConcurrentChangeError,
    ExperimentError,
    IllegalTransitionError,
    UnknownExperimentError,
    UnknownVersionError,
)
from ratchet.evaluation import fewshot_program
from ratchet.loop.rollouts import rollout_controller
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController, decide, monitor_experiment
from ratchet.rollout.experiments import Experiment
from ratchet.routing import choose_arm, read_routing
from ratchet.store.outcomes import ArmStats, OutcomeRecorder

SIG = "classify_intent"


@pytest.fixture
def controller(tmp_path: Path, state_db_url: str) -> RolloutController:
    settings = Settings(home=tmp_path / "home", database_url=state_db_url)
    settings.rollout.min_stage_minutes = 0
    settings.rollout.min_stage_requests = 30
    settings.rollout.start_in_shadow = False  # the traffic stages (shadow: test_shadow.py)
    registry = load_programs(settings)
    spec = registry.get(SIG)
    store = VersionStore(settings.home_dir)
    store.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
    store.save(spec, fewshot_program(spec, 4), lm="m", adapter="a")  # v2
    return rollout_controller(settings, registry)


def serve(controller: RolloutController, arm: str, version: str, n: int, *, errors: int = 0, latency_s: float = 0.1,
          quality: float | None = None, experiment_id: str = "exp_1") -> None:
    """Count ``n`` requests of one arm, served within ``experiment_id``, as the runtime would."""
    from ratchet.store.feedback import record_feedback

    recorder = OutcomeRecorder(controller.db, flush_interval_s=60)
    stamp = time.time()
    for i in range(n):
        rid = f"{arm}-{version}-{stamp}-{i}"
        failed = i < errors
        recorder.record(SIG, version, arm, latency_s=latency_s, success=not failed,
                        error_type="parse_error" if failed else None, experiment_id=experiment_id)
        recorder.index_request(rid, SIG, version, arm)
    recorder.close()
    if quality is not None:
        for i in range(n):
            record_feedback(controller.db, f"{arm}-{version}-{stamp}-{i}", quality)


def test_an_experiment_counts_only_what_it_served(controller: RolloutController) -> None:
    """Requests of the same versions and arms in the same minute, outside the experiment, do not count."""
    serve(controller, "baseline", "v1", 50, errors=50, experiment_id="")  # before it started, same minute
    serve(controller, "candidate", "v2", 50, errors=50, experiment_id="older_exp")  # another experiment
    exp = controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    serve(controller, "baseline", "v1", 30)
    serve(controller, "candidate", "v2", 10)
    decision = controller.evaluate(controller.store.get(exp.experiment_id))
    assert decision.metrics["baseline"]["requests"] == 30 and decision.metrics["baseline"]["errors"] == 0
    assert decision.metrics["candidate"]["requests"] == 10 and decision.action != "rollback"


def test_start_publishes_the_route_and_a_snapshot(controller: RolloutController) -> None:
    exp = controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    assert (exp.status, exp.stage_percent, exp.candidate_share) == ("running", 10, 0.10)
    route = read_routing(controller.routing_path).route(SIG)
    assert (route.baseline_version, route.candidate_version, route.candidate_share) == ("v1", "v2", 0.10)
    assert route.salt.startswith("exp_1:") and len(route.salt) == len("exp_1:") + 32 and route.state == "running"
    snapshot = json.loads(controller.snapshot_path("exp_1").read_text())
    assert snapshot["status"] == "running" and snapshot["events"][0]["kind"] == "start"


def test_start_refuses_bad_requests_and_changes_nothing(controller: RolloutController) -> None:
    with pytest.raises(UnknownVersionError):
        controller.start(SIG, "v9", experiment_id="exp_x")
    with pytest.raises(ExperimentError, match="nothing to compare"):
        controller.start(SIG, "v1", experiment_id="exp_x", baseline="v1")
    with pytest.raises(ExperimentError, match="invalid experiment id"):
        controller.start(SIG, "v2", experiment_id="../etc")
    assert not controller.routing_path.exists()
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    with pytest.raises(ExperimentError, match="already has a live experiment"):
        controller.start(SIG, "v1", experiment_id="exp_2", baseline="base")
    with pytest.raises(ExperimentError, match="already exists"):
        controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    assert [e.experiment_id for e in controller.store.list()] == ["exp_1"]


def test_every_transition_and_every_illegal_one(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    paused = controller.pause("exp_1")
    assert paused.status == "paused"
    assert read_routing(controller.routing_path).route(SIG).candidate_share == 0.10  # pause holds the split
    with pytest.raises(IllegalTransitionError, match="cannot pause"):
        controller.pause("exp_1")
    assert controller.resume("exp_1").status == "running"
    with pytest.raises(IllegalTransitionError, match="cannot resume"):
        controller.resume("exp_1")
    rolled = controller.rollback("exp_1", reason="manual test")
    assert rolled.status == "rolled_back" and rolled.ended_at is not None
    route = read_routing(controller.routing_path).route(SIG)
    assert route is None and choose_arm(route, "anyone") == "baseline"  # an ended experiment routes nothing
    for action in (controller.promote, controller.pause, controller.resume):
        with pytest.raises(IllegalTransitionError):
            action("exp_1")
    with pytest.raises(IllegalTransitionError):
        controller.rollback("exp_1", reason="again")
    kinds = [e.kind for e in controller.store.events("exp_1")]
    assert kinds == ["start", "pause", "resume", "rollback"]
    assert all(e.metrics is not None for e in controller.store.events("exp_1")[1:])
    with pytest.raises(UnknownExperimentError):
        controller.pause("nope")


def test_promotion_sets_production_and_removes_the_route(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    controller.promote("exp_1", reason="looks good")
    assert controller.production.get(SIG) == "v2"
    alerts = list((controller.settings.home_dir / "alerts").glob("alert_info_*.json"))
    assert json.loads(alerts[0].read_text())["title"] == "A/B Test Promoted"


def test_a_stale_revision_changes_nothing(controller: RolloutController) -> None:
    exp = controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    controller.pause("exp_1")
    with pytest.raises(ConcurrentChangeError):
        controller.store.transition(exp, "rollback", actor="slow", changes={"status": "rolled_back"}, reason="late")
    assert controller.store.get("exp_1").status == "paused"


def test_stages_advance_then_promote(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1", stages=[10, 50, 100])
    assert controller.check("exp_1").action == "hold"  # no candidate requests yet
    serve(controller, "baseline", "v1", 100)
    serve(controller, "candidate", "v2", 40)
    decision = controller.check("exp_1")
    assert decision.action == "advance" and "moving to 50 %" in decision.reason
    assert read_routing(controller.routing_path).route(SIG).candidate_share == 0.5
    assert controller.check("exp_1").action == "hold"  # the new stage has no candidate requests of its own
    serve(controller, "candidate", "v2", 40)
    assert controller.check("exp_1").action == "promote"
    assert controller.store.get("exp_1").status == "promoted"
    assert controller.production.get(SIG) == "v2"


def test_a_broken_candidate_is_rolled_back_with_numbers(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    serve(controller, "baseline", "v1", 200, errors=4)
    serve(controller, "candidate", "v2", 15, errors=12)
    decision = controller.check("exp_1")
    assert decision.action == "rollback"
    assert decision.reason.startswith("catastrophe trigger: candidate failed 12 of 15")
    exp = controller.store.get("exp_1")
    assert exp.status == "rolled_back" and exp.reason == decision.reason
    alert = json.loads(next((controller.settings.home_dir / "alerts").glob("alert_warning_*.json")).read_text())
    assert alert["title"] == "A/B Test Rolled Back"
    assert alert["details"]["final_traffic_percent"] == 10 and "catastrophe" in alert["details"]["reason"]


def test_pause_blocks_advancing_but_not_rollback(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    serve(controller, "baseline", "v1", 100)
    serve(controller, "candidate", "v2", 40)
    controller.pause("exp_1")
    assert controller.check("exp_1").action == "hold"
    assert controller.store.get("exp_1").stage_index == 0
    serve(controller, "candidate", "v2", 30, errors=30)
    assert controller.check("exp_1").action == "rollback"


def _experiment(**overrides) -> Experiment:
    base = {"experiment_id": "e", "signature": SIG, "baseline_version": "v1", "candidate_version": "v2",
            "status": "running", "stages": [10, 25, 50, 75, 100], "stage_index": 0, "stage_started_at": 0.0,
            "min_stage_minutes": 60.0, "min_stage_requests": 100, "salt": "e",
            "config": {"max_error_rate_increase": 0.05, "max_latency_increase_ms": 500, "min_quality": 0.7,
                       "alpha": 0.05, "catastrophe_window": 20}}
    base.update(overrides)
    return Experiment(**base)


def _arm(n: int, errors: int = 0, latency: float = 0.2, std: float = 0.05, quality: float | None = None,
         quality_n: int = 0) -> ArmStats:
    return ArmStats(requests=n, errors=errors, error_rate=errors / n if n else 0.0, latency_mean_s=latency,
                    latency_std_s=std, quality_count=quality_n, quality_mean=quality,
                    quality_std=0.1 if quality is not None else None)


@pytest.mark.parametrize(
    ("candidate", "trigger"),
    [
        (_arm(400, errors=80), "error_rate"),  # 20 % vs 2 %
        (_arm(400, latency=1.2, std=0.2), "latency"),  # +1000 ms
        (_arm(400, quality=0.4, quality_n=200), "quality"),
    ],
)
def test_each_trigger_fires_on_a_clear_regression(candidate: ArmStats, trigger: str) -> None:
    decision = decide(_experiment(), _arm(4000, errors=80), candidate, 50, now=100.0)
    assert decision.action == "rollback" and decision.reason.startswith(f"{trigger} trigger")


def test_small_noisy_differences_do_not_fire() -> None:
    decision = decide(_experiment(), _arm(900, errors=18), _arm(100, errors=4, quality=0.72, quality_n=60), 100,
                      now=100.0)
    assert decision.action == "hold" and not any(c.fired for c in decision.checks)


def test_time_gate_excludes_paused_time() -> None:
    exp = _experiment(stage_started_at=0.0, paused_seconds=1800.0)
    decision = decide(exp, _arm(1000), _arm(150), 150, now=3600.0)
    assert decision.action == "hold" and "30.0 of 60 min" in decision.reason
    assert decide(exp, _arm(1000), _arm(150), 150, now=5400.0).action == "advance"


def test_two_monitors_never_both_act(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1", stages=[10, 25, 50, 75, 100])
    serve(controller, "baseline", "v1", 200)
    serve(controller, "candidate", "v2", 40)
    actions: list[str] = []
    barrier = threading.Barrier(2)

    def run(name: str) -> None:
        other = rollout_controller(controller.settings, controller.registry)
        barrier.wait()
        monitor_experiment(other, "exp_1", owner=name, on_decision=lambda e, d: actions.append(d.action))

    threads = [threading.Thread(target=run, args=(f"monitor-{i}",)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(actions) == ["advance", "hold"]
    assert controller.store.get("exp_1").stage_index == 1
    assert [e.kind for e in controller.store.events("exp_1")].count("advance") == 1


def test_daemon_runs_until_the_end_and_survives_a_restart(controller: RolloutController) -> None:
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1", stages=[10, 100])
    first = monitor_experiment(controller, "exp_1", daemon=False)  # a monitor that checks once and "crashes"
    assert first.status == "running"
    serve(controller, "baseline", "v1", 200)
    serve(controller, "candidate", "v2", 40)
    restarted = rollout_controller(controller.settings, controller.registry)
    final = monitor_experiment(restarted, "exp_1", daemon=True, interval_s=0.05)
    assert final.status == "promoted"


def test_a_crash_between_the_database_and_the_routing_file_is_repaired(controller: RolloutController) -> None:
    exp = controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    # The controller committed a rollback, then died before rewriting routing_config.json:
    controller.store.transition(exp, "rollback", actor="daemon", changes={"status": "rolled_back", "reason": "x"},
                                reason="x")
    assert read_routing(controller.routing_path).route(SIG).candidate_share == 0.10  # stale on disk
    rollout_controller(controller.settings, controller.registry).check("exp_1")
    assert read_routing(controller.routing_path).route(SIG) is None
    # ... and a promotion whose production.json projection was never written (the database moved the pointer
    # in the promotion's own transaction; only the file lags):
    controller.start(SIG, "v2", experiment_id="exp_2", baseline="v1")
    controller.promote("exp_2")
    (controller.settings.home_dir / "programs" / SIG / "production.json").write_text('{"version": "v1"}')
    controller.reconcile()
    assert controller.production.get(SIG) == "v2" and controller.versions.projected_production(SIG) == "v2"
    assert read_routing(controller.routing_path).route(SIG) is None
