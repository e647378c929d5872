"""Every state change takes one path: compare-and-set in the state database, projections written from it.

An operator racing the controller (in separate processes) never ends with candidate traffic after a
rollback, and a manual `ratchet programs promote` is never undone by the controller.
"""

from __future__ import annotations

import multiprocessing
import random
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.errors import ConcurrentChangeError, IllegalTransitionError
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.rollout.projection import routing_from
from ratchet.routing import read_routing

SIG = "classify_intent"
STAGES = list(range(5, 100, 5))  # 19 stages: a controller needs 19 checks to promote


def _settings(home: Path, url: str) -> Settings:
    settings = Settings(home=home, database_url=url)
    settings.rollout.min_stage_minutes = 0
    settings.rollout.min_stage_requests = 1
    settings.rollout.start_in_shadow = False
    return settings


@pytest.fixture
def workspace(tmp_path: Path, state_db_url: str) -> tuple[Path, str]:
    settings = _settings(tmp_path / "home", state_db_url)
    spec = load_programs(settings).get(SIG)
    VersionStore(settings.home_dir).save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
    return settings.home_dir, state_db_url


def _controller(home: Path, url: str) -> RolloutController:
    settings = _settings(home, url)
    return RolloutController(settings, load_programs(settings))


def _count_candidate_requests(controller: RolloutController, n: int, experiment_id: str) -> None:
    from ratchet.store.outcomes import OutcomeRecorder

    recorder = OutcomeRecorder(controller.db, flush_interval_s=60)
    for _ in range(n):
        recorder.record(SIG, "v1", "candidate", latency_s=0.05, success=True, experiment_id=experiment_id)
        recorder.record(SIG, "base", "baseline", latency_s=0.05, success=True, experiment_id=experiment_id)
    recorder.close()


def _controller_loop(home: str, url: str, experiment_id: str) -> None:
    controller = _controller(Path(home), url)
    while controller.store.get(experiment_id).live:
        _count_candidate_requests(controller, 2, experiment_id)  # each stage needs its own candidate requests
        controller.check(experiment_id, actor="controller")


def _operator_rollback(home: str, url: str, experiment_id: str, delay_s: float) -> None:
    controller = _controller(Path(home), url)
    time.sleep(delay_s)
    while True:
        try:
            controller.rollback(experiment_id, reason="operator", actor="operator")
            return
        except ConcurrentChangeError:
            continue  # the controller moved it meanwhile: look again and roll back what is there now
        except IllegalTransitionError:
            return  # already promoted (or rolled back): nothing to undo


@pytest.mark.slow
def test_an_operator_rollback_racing_the_controller_never_leaves_candidate_traffic(workspace) -> None:
    home, url = workspace
    ctx = multiprocessing.get_context("spawn")
    rng = random.Random(7)
    outcomes = []
    for round_ in range(8):
        controller = _controller(home, url)
        experiment_id = f"race_{round_}"
        controller.start(SIG, "v1", experiment_id=experiment_id, stages=STAGES)
        processes = [ctx.Process(target=_controller_loop, args=(str(home), url, experiment_id)),
                     ctx.Process(target=_operator_rollback, args=(str(home), url, experiment_id,
                                                                   rng.uniform(0.0, 1.5)))]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=120)
            assert process.exitcode == 0
        final = controller.store.get(experiment_id)
        events = controller.store.events(experiment_id)
        kinds = [e.kind for e in events]
        outcomes.append(final.status)
        assert final.status in ("rolled_back", "promoted")
        assert kinds.count("rollback") + kinds.count("promote") == 1 and kinds[-1] in ("rollback", "promote")
        if final.status == "rolled_back":
            assert kinds.index("rollback") == len(kinds) - 1  # nothing happened after the rollback
            assert routing_from(controller.store.list(statuses=("running", "paused"))).route(SIG) is None
            controller.publish()
            assert read_routing(controller.routing_path).route(SIG) is None
            assert controller.production.get(SIG) == "base"
        else:
            assert controller.production.get(SIG) == "v1"
            controller.production.set(SIG, "base", actor="test", reason="reset for the next round")
    assert "rolled_back" in outcomes  # the race really happened both ways at least once
    assert any(len([e for e in controller.store.events(f"race_{i}") if e.kind == "advance"]) > 0
               for i in range(8) if outcomes[i] == "rolled_back")


def test_a_manual_promotion_survives_100_controller_checks(workspace) -> None:
    home, url = workspace
    controller = _controller(home, url)
    controller.start(SIG, "v1", experiment_id="exp_1", stages=[50, 100])
    runner = CliRunner()
    config = home.parent / "ratchet.toml"
    config.write_text(f'home = "{home}"\ndatabase_url = "{url}"\n')
    refused = runner.invoke(app, ["--config", str(config), "programs", "promote", SIG, "base"])
    assert refused.exit_code == 2 and "live experiment (exp_1)" in refused.stderr
    controller.promote("exp_1", reason="good")
    assert controller.production.get(SIG) == "v1"
    rolled_back = runner.invoke(app, ["--config", str(config), "programs", "promote", SIG, "base",
                                      "--reason", "operator rollback"])
    assert rolled_back.exit_code == 0, rolled_back.stderr
    for _ in range(100):
        assert controller.check("exp_1").action == "hold"
    assert controller.production.get(SIG) == "base"
    assert VersionStore(home).projected_production(SIG) == "base"
    assert [(c.from_version, c.to_version, c.actor) for c in controller.production.history(SIG)] == [
        ("base", "v1", "operator"), ("v1", "base", "operator")]
