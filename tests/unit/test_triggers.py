"""Live triggers: feedback volume and degradation start a cycle, within the interval and experiment limits."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ratchet.config import Settings
from ratchet.evaluation import fewshot_program
from ratchet.loop.supervisor import Supervisor
from ratchet.loop.triggers import evaluate_triggers
from ratchet.monitor.loop_state import read_trigger_snapshot
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import OutcomeRecorder

SIG = "classify_intent"


@pytest.fixture
def settings(tmp_path: Path, state_db_url: str) -> Settings:
    settings = Settings(home=tmp_path / "home", database_url=state_db_url)
    settings.monitor.canary.enabled = False  # canary passes run the model: test_canary_wiring covers them
    settings.loop.feedback_volume_threshold = 20
    settings.loop.min_degradation_requests = 30
    return settings


def served(db: StateDB, n: int, *, errors: int = 0, at: float, quality: float | None = None,
           prefix: str = "r") -> None:
    """``n`` production requests at ``at`` (``errors`` of them failed), with feedback ``quality`` when given."""
    recorder = OutcomeRecorder(db, flush_interval_s=60)
    for i in range(n):
        recorder.record(SIG, "base", "baseline", latency_s=0.05, success=i >= errors, at=at,
                        error_type="parse_error" if i < errors else None)
        recorder.index_request(f"{prefix}-{at}-{i}", SIG, "base", "baseline", at=at)
    recorder.close()
    if quality is not None:
        for i in range(n):
            record_feedback(db, f"{prefix}-{at}-{i}", quality, at=at)


def write_run(settings: Settings, started: float, signatures: list[str] | None) -> None:
    run_dir = settings.home_dir / "runs" / f"run_{int(started)}"
    run_dir.mkdir(parents=True)
    (run_dir / "orchestration_summary.json").write_text(json.dumps({
        "run_id": run_dir.name, "started_at": datetime.fromtimestamp(started, UTC).isoformat(),
        "finished_at": datetime.fromtimestamp(started + 60, UTC).isoformat(), "success": True,
        "options": {"signatures": signatures}, "signatures": {}}))


def test_feedback_volume_fires_and_is_held_by_the_interval_a_live_experiment_or_the_switch(settings) -> None:
    registry = load_programs(settings)
    db = StateDB.connect(settings)
    now = time.time()
    served(db, 19, at=now - 600, quality=1.0)
    assert not evaluate_triggers(settings, registry, db, now=now)[SIG].fire
    served(db, 1, at=now - 60, quality=0.0, prefix="last")
    verdict = evaluate_triggers(settings, registry, db, now=now)[SIG]
    assert verdict.fire and verdict.kind == "feedback_volume" and "20 new feedback" in verdict.reason
    write_run(settings, now - 30, [SIG])  # a cycle started after that feedback: it used it...
    verdict = evaluate_triggers(settings, registry, db, now=now)[SIG]
    assert not verdict.fire and verdict.numbers["new_feedback"] == 0
    served(db, 25, at=now - 10, quality=1.0, prefix="after")  # ...new feedback since, but the 24 h interval holds
    verdict = evaluate_triggers(settings, registry, db, now=now)[SIG]
    assert not verdict.fire and "optimization_interval_hours" in verdict.blocked
    assert evaluate_triggers(settings, registry, db, now=now + 24 * 3600)[SIG].fire
    settings.loop.signatures = {SIG: {"enable_automatic_optimization": False}}
    assert "automatic optimization is off" in evaluate_triggers(settings, registry, db, now=now + 86400)[SIG].blocked
    settings.loop.signatures = {}
    spec = registry.get(SIG)
    VersionStore(settings.home_dir).save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
    RolloutController(settings, registry, db=db).start(SIG, "v1", experiment_id="exp_1")
    assert "live" in evaluate_triggers(settings, registry, db, now=now + 86400)[SIG].blocked


def test_a_real_drop_in_success_rate_fires_and_noise_does_not(settings) -> None:
    registry = load_programs(settings)
    db = StateDB.connect(settings)
    now = time.time()
    served(db, 400, errors=8, at=now - 2 * 86400)  # the trailing week: 98 % success
    served(db, 60, errors=3, at=now - 600)  # the last hour: 95 %, a small dip
    verdict = evaluate_triggers(settings, registry, db, now=now)[SIG]
    assert not verdict.fire and verdict.numbers["success_drop_lower_bound"] < 0.15 * 0.98
    served(db, 60, errors=40, at=now - 300, prefix="bad")  # now 120 requests, 43 failed: 64 % success
    verdict = evaluate_triggers(settings, registry, db, now=now)[SIG]
    assert verdict.fire and verdict.kind == "degradation" and "success rate fell to 64.2%" in verdict.reason


def test_a_drop_in_feedback_quality_fires(settings) -> None:
    settings.loop.feedback_volume_threshold = 10_000  # judge quality alone
    registry = load_programs(settings)
    db = StateDB.connect(settings)
    now = time.time()
    for day in range(1, 4):
        served(db, 40, at=now - day * 86400, quality=0.9 if day % 2 else 0.8, prefix=f"d{day}")
    served(db, 40, at=now - 600, quality=0.85, prefix="ok")
    assert not evaluate_triggers(settings, registry, db, now=now)[SIG].fire
    served(db, 40, at=now - 300, quality=0.2, prefix="bad")
    verdict = evaluate_triggers(settings, registry, db, now=now)[SIG]
    assert verdict.fire and "feedback quality fell" in verdict.reason


def test_the_controller_starts_a_cycle_with_the_reason_under_the_cycle_lock(settings, tmp_path: Path) -> None:
    registry = load_programs(settings)
    db = StateDB.connect(settings)
    served(db, 25, at=time.time() - 60, quality=1.0)
    marker = tmp_path / "cycles.txt"

    def cycle(signature: str, reason: str) -> list[str]:
        return [sys.executable, "-c", "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '|' + sys.argv[3] + "
                "'\\n')", str(marker), signature, reason]

    supervisor = Supervisor(settings, registry, owner="controller:a", cycle_command=cycle)
    tick = supervisor.tick()
    assert tick.triggers[SIG].fire
    supervisor.cycles[SIG].join(timeout=60)
    (line,) = marker.read_text().splitlines()
    assert line.startswith(f"{SIG}|feedback_volume: 25 new feedback")
    snapshot = read_trigger_snapshot(settings.home_dir)
    assert SIG in snapshot["launched"] and snapshot["signatures"][SIG]["kind"] == "feedback_volume"
    log = [json.loads(x) for x in (settings.home_dir / "logs" / "schedule.jsonl").read_text().splitlines()]
    assert [(e["event"], e["job"]) for e in log] == [("start", "cycle"), ("end", "cycle")]
    alerts = [json.loads(p.read_text()) for p in (settings.home_dir / "alerts").glob("alert_info_*.json")]
    assert any(a["title"] == "Re-optimization Triggered" for a in alerts)
    assert supervisor.tick().triggers == {}  # evaluated again only after loop.trigger_check_interval_s


def test_a_canary_drop_of_production_fires_the_degradation_trigger(settings) -> None:
    """No feedback, no errors: the canary probes alone show production got worse (e.g. the model changed)."""
    from ratchet.store.canaries import CanaryRun, record_canary_runs

    settings.monitor.canary.trailing_runs = 3
    registry = load_programs(settings)
    db = StateDB.connect(settings)

    def run(scores: list[float], at: float) -> CanaryRun:
        keyed = {f"probe{i:03d}": s for i, s in enumerate(scores)}
        return CanaryRun(signature=SIG, version="base", at=at, probe_set="p1", n=len(scores),
                         score=sum(scores) / len(scores), scores=keyed, pass_id=f"p{at}")

    steady = [1.0] * 45 + [0.0] * 5
    record_canary_runs(db, [run(steady, 100.0), run(steady, 200.0), run(steady, 300.0)])
    assert not evaluate_triggers(settings, registry, db)[SIG].fire
    record_canary_runs(db, [run([1.0] * 20 + [0.0] * 30, 400.0)])
    verdict = evaluate_triggers(settings, registry, db)[SIG]
    assert verdict.fire and verdict.kind == "degradation" and "canary score dropped" in verdict.reason
