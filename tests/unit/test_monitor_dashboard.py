"""The dashboard document (seed 001's shape) and the ``ratchet monitor`` / ``ratchet status`` commands."""

import json
import time
from pathlib import Path

import pytest
import typer
from monitor_helpers import DAY, SIG, count, experiment, records, write_run
from typer.testing import CliRunner

from ratchet.cli import monitor_cmd
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.errors import UnknownProgramError
from ratchet.monitor.dashboard import build_dashboard
from ratchet.programs import load_programs
from ratchet.rollout.experiments import ExperimentStore
from ratchet.store.db import StateDB
from ratchet.store.leases import CONTROLLER_LEASE, LeaseStore

runner = CliRunner()


def seed_state(settings: Settings) -> StateDB:
    """Runs, experiments (one live, one promoted, one rolled back), two dataset versions, live traffic."""
    now = time.time()
    write_run(settings, "run_20261101_020000", success=True, started=now - 2 * DAY, deployed=[SIG], improvement=7.5)
    write_run(settings, "run_20261125_020000", success=False, started=now - DAY, errors=["boom"])
    db = StateDB.connect(settings)
    store = ExperimentStore(db)
    for exp_id, kind in (("old_a", "promote"), ("old_b", "rollback")):
        exp = store.create(experiment(exp_id), actor="t")
        store.transition(exp, kind, actor="t", reason="r",
                         changes={"status": "promoted" if kind == "promote" else "rolled_back"})
    live = store.create(experiment("intent_v2"), actor="t")
    LeaseStore(db).acquire(CONTROLLER_LEASE, "controller:test", 600)  # a rollout controller is running
    count(db, SIG, "v1", "baseline", 90, at=live.stage_started_at + 61)
    count(db, SIG, "v2", "candidate", 10, at=live.stage_started_at + 61)
    datasets = DatasetStore(settings.home_dir, settings.data, registry=load_programs(settings))
    datasets.create(SIG, records(0, 30, 80.0), source="git")
    datasets.create(SIG, records(30, 60, 78.5), source="git")
    return db


def test_dashboard_has_the_seed_shape(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    db = seed_state(settings)
    data = build_dashboard(settings, db=db)
    assert {"timestamp", "orchestration", "ab_tests", "datasets", "alerts"} <= set(data)
    orch = data["orchestration"]
    assert {"last_run", "last_success", "consecutive_failures"} <= set(orch)
    assert orch["last_run"] == "run_20261125_020000" and orch["consecutive_failures"] == 1
    assert orch["last_success"] and orch["last_improvement"]["run_id"] == "run_20261101_020000"
    ab = data["ab_tests"]
    assert {k: ab[k] for k in ("active", "paused", "completed", "rolled_back")} == {
        "active": 1, "paused": 0, "completed": 1, "rolled_back": 1}
    (live,) = ab["experiments"]
    assert live["experiment_id"] == "intent_v2" and live["traffic"]["observed_percent"] == 10.0
    dataset = data["datasets"][SIG]
    assert {k: dataset[k] for k in ("examples", "quality", "sources")} == {
        "examples": 30, "quality": 78.5, "sources": ["git", "synthetic"]}
    assert dataset["version"].startswith("v") and dataset["versions"] == 2
    assert data["alerts"] == {"last_check": None, "recent_alerts": [], "active": []}
    assert data["slo"]["signatures"][SIG]["all"]["requests"] == 100
    assert data["drift"] == {"checked_at": None, "window_hours": 24.0, "signatures": {}}  # no drift check yet
    json.dumps(data)  # plain JSON


def test_a_section_that_cannot_be_read_says_why(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", database_url="postgresql://nobody@127.0.0.1:1/none")
    data = build_dashboard(settings)
    assert data["ab_tests"]["active"] == 0 and "error" in data["ab_tests"]
    assert data["orchestration"]["last_run"] is None and "error" not in data["orchestration"]


# -- the commands -------------------------------------------------------------------------------------------


@pytest.fixture
def project(tmp_path: Path) -> Settings:
    (tmp_path / "ratchet.toml").write_text('home = "home"\n\n[monitor]\nretry_backoff_s = 0\n')
    return Settings(home=tmp_path / "home")


def invoke(*args: str) -> object:
    return runner.invoke(monitor_cmd.app, list(args))


def test_check_commands_exit_with_the_worst_level(project: Settings) -> None:
    result = invoke("check-orchestration", "--no-dispatch")
    assert result.exit_code == 0, result.output
    assert "No Orchestration Runs" in result.stdout and "evaluated only" in result.stdout
    assert not (project.home_dir / "monitoring_state.json").exists()

    now = time.time()
    for i in (1, 2):
        write_run(project, f"run_2026110{i}_020000", success=False, started=now - i * DAY, errors=["boom"])
    result = invoke("check-orchestration", "--json")
    assert result.exit_code == 2, result.output
    out = json.loads(result.stdout)
    assert out["worst_level"] == "error" and out["exit_code"] == 2 and out["dispatched"]
    (delivery,) = out["deliveries"]
    assert delivery["action"] == "new" and {c["channel"]: c["ok"] for c in delivery["channels"]} == {
        "file": True, "log": True}
    (alert_file,) = (project.home_dir / "alerts").glob("alert_error_*.json")
    assert json.loads(alert_file.read_text())["title"] == "Orchestration Run Failures"

    again = invoke("check-all")
    assert again.exit_code == 2
    assert "not re-sent (active, cooldown until" in again.stdout and "worst level: error → exit 2" in again.stdout

    db = StateDB.connect(project)
    count(db, SIG, "v1", "baseline", 20, errors=15)
    assert invoke("check-slo", "--no-dispatch").exit_code == 3
    assert invoke("check-ab-tests").exit_code == 0
    state = json.loads((project.home_dir / "monitoring_state.json").read_text())
    assert set(state["checks"]) == {"orchestration", "ab_tests", "controller", "dataset_quality", "slo", "drift",
                                    "canary", "audit", "keys", "annotation", "golden"}


def test_check_dataset_quality_for_one_signature(project: Settings) -> None:
    datasets = DatasetStore(project.home_dir, project.data, registry=load_programs(project))
    datasets.create(SIG, records(0, 30, 80.0), source="git")
    datasets.create(SIG, records(30, 60, 60.0), source="git")
    result = invoke("check-dataset-quality", "--signature", SIG, "--json")
    assert result.exit_code == 1, result.output
    (alert,) = json.loads(result.stdout)["alerts"]
    assert alert["title"] == "Dataset Quality Degradation" and alert["details"]["drop_percent"] == 25.0
    unknown = invoke("check-dataset-quality", "--signature", "nope")
    assert isinstance(unknown.exception, UnknownProgramError)  # the root command turns it into exit 2


def test_dashboard_and_status(project: Settings) -> None:
    seed_state(project)
    assert invoke("check-all").exit_code == 1  # the rollback (a warning); one failed run is below the threshold
    assert invoke("check-ab-tests").exit_code == 0  # the rollback was alerted: not a finding any more
    result = invoke("dashboard")  # not a terminal: JSON, so `ratchet monitor dashboard | jq .` works
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["alerts"]["last_check"] and data["alerts"]["recent_alerts"][0]["title"]
    app = typer.Typer()
    app.command("status")(monitor_cmd.status)
    shown = runner.invoke(app, [], terminal_width=160)
    assert shown.exit_code == 0, shown.output
    for text in ("Optimization cycles", "run_20261125_020000", "Experiments", "intent_v2", "Datasets", SIG,
                 "Live service levels", "Alerts", "A/B Test Rolled Back"):
        assert text in shown.stdout, text
    assert json.loads(runner.invoke(app, ["--json"]).stdout)["ab_tests"]["completed"] == 1


def test_check_drift_and_the_drift_section(project: Settings) -> None:
    now_ms = int(time.time() * 1000)
    unseen = Path(__file__).parent / "data" / "banking77_unseen_intents.jsonl"
    texts = [json.loads(line)["text"] for line in unseen.read_text().splitlines()][:120]
    (project.home_dir / "telemetry").mkdir(parents=True)
    (project.home_dir / "telemetry" / "interactions.jsonl").write_text("".join(
        json.dumps({"record": "interaction", "module_name": "Predict", "module_version": "base", "signature": SIG,
                    "input": {"text": text}, "output": {"intent": "card_arrival"}, "timestamp_ms": now_ms - i,
                    "success": True, "arm": "baseline"}) + "\n" for i, text in enumerate(texts)))
    result = invoke("check-drift", "--no-dispatch", "--json")
    assert result.exit_code == 1, result.output
    out = json.loads(result.stdout)
    assert {a["title"] for a in out["alerts"]} == {"Output Drift", "Input Drift"}
    assert out["checks"][0]["summary"]["signatures"][SIG]["reference"]["kind"] == "bundled"
    assert not (project.home_dir / "metrics").exists()
    shown = runner.invoke(monitor_cmd.app, ["check-drift"], terminal_width=200)
    assert shown.exit_code == 1, shown.output
    for text in ("output, input", "120", "85.0% / 11.2%", "Input Drift", "extract_booking: not enough data: 0",
                 "bundled train data"):
        assert text in shown.stdout, text
    drift = json.loads(invoke("dashboard").stdout)["drift"]
    assert drift["checked_at"] and drift["signatures"][SIG]["status"] == "drift"
    assert drift["signatures"][SIG]["output_psi"] > 0.25 and drift["signatures"][SIG]["live_n"] == 120
    app = typer.Typer()
    app.command("status")(monitor_cmd.status)
    status = runner.invoke(app, [], terminal_width=200)
    assert "Drift" in status.stdout and "output, input" in status.stdout


def test_status_shows_the_newest_canary_run_of_each_version_and_experiments_in_shadow(project: Settings) -> None:
    from ratchet.store.canaries import CanaryRun, record_canary_runs

    db = StateDB.connect(project)
    record_canary_runs(db, [CanaryRun(SIG, "v1", time.time() - 600, "p1", 40, 0.7, errors=1),
                            CanaryRun(SIG, "v1", time.time() - 60, "p1", 40, 0.825, parse_failures=2),
                            CanaryRun(SIG, "v2", time.time() - 60, "p1", 40, 0.9)])
    store = ExperimentStore(db)
    store.create(experiment("intent_v2", status="shadow"), actor="t")
    data = json.loads(invoke("dashboard").stdout)
    runs = {(r["version"], r["score"], r["parse_failures"]) for r in data["canaries"]["runs"]}
    assert runs == {("v1", 0.825, 2), ("v2", 0.9, 0)}
    assert data["ab_tests"]["shadow"] == 1 and data["ab_tests"]["experiments"][0]["status"] == "shadow"
    app = typer.Typer()
    app.command("status")(monitor_cmd.status)
    shown = runner.invoke(app, [], terminal_width=200).stdout
    assert "Canaries" in shown and "0.825" in shown and "1 in shadow" in shown
