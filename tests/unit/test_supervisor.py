"""The supervising controller: one acts, each experiment's check is isolated, a dead one is seen and replaced."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ratchet.config import Settings
from ratchet.evaluation import fewshot_program
from ratchet.loop.supervisor import ALERT_AFTER, Supervisor
from ratchet.monitor.checks.controller import HEARTBEAT_STALE_S, check_controller
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.store.leases import CONTROLLER_LEASE, LeaseStore
from ratchet.store.outcomes import OutcomeRecorder

SIG = "classify_intent"


@pytest.fixture
def settings(tmp_path: Path, state_db_url: str) -> Settings:
    settings = Settings(home=tmp_path / "home", database_url=state_db_url)
    settings.monitor.canary.enabled = False  # canary passes run the model: test_canary_wiring covers them
    settings.rollout.min_stage_minutes = 0
    settings.rollout.min_stage_requests = 5
    settings.rollout.stages = [20, 50, 100]
    settings.rollout.start_in_shadow = False
    spec = load_programs(settings).get(SIG)
    VersionStore(settings.home_dir).save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
    return settings


def serve(controller: RolloutController, experiment_id: str, n: int) -> None:
    recorder = OutcomeRecorder(controller.db, flush_interval_s=60)
    for _ in range(n):
        recorder.record(SIG, "v1", "candidate", latency_s=0.05, success=True, experiment_id=experiment_id)
        recorder.record(SIG, "base", "baseline", latency_s=0.05, success=True, experiment_id=experiment_id)
    recorder.close()


def test_only_the_lease_holder_acts_and_a_standby_takes_over(settings: Settings) -> None:
    registry = load_programs(settings)
    first = Supervisor(settings, registry, owner="controller:a", interval_s=0.1)
    second = Supervisor(settings, registry, owner="controller:b", interval_s=0.1)
    first.controller.start(SIG, "v1", experiment_id="exp_1")
    serve(first.controller, "exp_1", 10)
    assert first.tick().leader and not (standby := second.tick()).leader and standby.decisions == {}
    assert first.controller.store.get("exp_1").stage_index == 1  # the leader advanced it, once
    assert (settings.home_dir / "metrics" / "ratchet_controller.prom").is_file()
    LeaseStore(first.controller.db).release(CONTROLLER_LEASE, "controller:a")  # as its shutdown does
    serve(first.controller, "exp_1", 10)
    taken = second.tick()
    assert taken.leader and taken.decisions["exp_1"].action == "promote"
    assert not first.tick().leader  # the old leader, back, now stands by


def test_a_failing_experiment_never_stops_the_others_and_alerts_after_repeated_failures(settings: Settings,
                                                                                     monkeypatch) -> None:
    supervisor = Supervisor(settings, load_programs(settings), owner="controller:a")
    controller = supervisor.controller
    controller.start(SIG, "v1", experiment_id="exp_1")
    monkeypatch.setattr(controller.store, "list", lambda **kw: [controller.store.get("exp_1"), dataclasses.replace(
        controller.store.get("exp_1"), experiment_id="broken")])
    real_check = controller.check

    def check(experiment_id: str, **kwargs):
        if experiment_id == "broken":
            raise RuntimeError("corrupt experiment row")
        return real_check(experiment_id, **kwargs)

    monkeypatch.setattr(controller, "check", check)
    for _ in range(ALERT_AFTER):
        tick = supervisor.tick()
        assert "exp_1" in tick.decisions and tick.errors == {"broken": "RuntimeError: corrupt experiment row"}
    assert supervisor.errors["experiment"] == ALERT_AFTER
    alerts = [json.loads(p.read_text()) for p in (settings.home_dir / "alerts").glob("alert_error_*.json")]
    assert [a["title"] for a in alerts] == ["Rollout Controller Cannot Check Experiment"]
    metrics = (settings.home_dir / "metrics" / "ratchet_controller.prom").read_text()
    assert f'ratchet_controller_errors_total{{kind="experiment"}} {ALERT_AFTER}.0' in metrics


def test_check_controller_sees_a_missing_or_dead_controller_only_when_it_matters(settings: Settings) -> None:
    registry = load_programs(settings)
    supervisor = Supervisor(settings, registry, owner="controller:a")
    db = supervisor.controller.db
    assert check_controller(db=db).alerts == []  # no experiment: nothing needs a controller
    supervisor.controller.start(SIG, "v1", experiment_id="exp_1")
    never = check_controller(db=db).alerts
    assert [(a.level, a.title) for a in never] == [("critical", "Rollout Controller Down")]
    assert "no rollout controller has ever run" in never[0].message
    supervisor.tick()
    assert check_controller(db=db).alerts == []
    dead = check_controller(db=db, now=time.time() + HEARTBEAT_STALE_S + 1).alerts
    assert dead and "controller:a" in dead[0].message and dead[0].level == "critical"


@pytest.mark.slow
def test_a_real_controller_finishes_a_rollout_alone_and_survives_kill_9(settings: Settings, tmp_path: Path) -> None:
    """`ratchet controller run` processes, no command after the start; a SIGKILL mid-stage loses nothing."""
    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "{settings.home_dir}"\ndatabase_url = "{settings.database_url}"\n'
                      "[rollout]\nstages = [20, 50, 100]\nmin_stage_minutes = 0\nmin_stage_requests = 5\n"
                      "start_in_shadow = false\n"
                      "lease_ttl_s = 2\n")
    controller = RolloutController(settings, load_programs(settings))
    controller.start(SIG, "v1", experiment_id="exp_1")

    def start() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ratchet", "--config", str(config), "controller", "run",
                                 "--interval", "0.2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def wait_for(predicate, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            assert time.monotonic() < deadline, controller.store.events("exp_1")
            time.sleep(0.1)

    process = start()
    try:
        serve(controller, "exp_1", 10)
        wait_for(lambda: controller.store.get("exp_1").stage_index == 1)
        os.kill(process.pid, signal.SIGKILL)  # mid-stage: the lease lapses after lease_ttl_s
        process.wait(timeout=10)
        serve(controller, "exp_1", 10)
        process = start()
        wait_for(lambda: controller.store.get("exp_1").status == "promoted")
    finally:
        process.terminate()
        process.wait(timeout=30)
    kinds = [e.kind for e in controller.store.events("exp_1")]
    assert kinds == ["start", "advance", "promote"]  # no double action, no lost event
    assert controller.production.get(SIG) == "v1"
