"""`ratchet cycle` for real: child processes per phase, the embedded model evaluating, the stores on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import load_settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.files import load_examples
from ratchet.data.sampling import seeded_sample
from ratchet.loop.cycle import CycleOptions, run_cycle
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout.experiments import ExperimentStore
from ratchet.store.db import StateDB
from ratchet.telemetry.records import FeedbackRecord, InteractionLog
from ratchet.telemetry.writer import TelemetryWriter

pytestmark = [pytest.mark.integration, pytest.mark.slow]

BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"


def write_workspace(tmp_path: Path, *, single_source_ok: bool) -> Path:
    gate = "[data.gates.classify_intent]\nmax_source_share = 1.0\n" if single_source_ok else ""
    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "state"\n{gate}')
    settings = load_settings(config)
    spec = load_programs(settings).get("classify_intent")
    examples = seeded_sample(load_examples(BANKING, spec.schema).examples, 300, 0)  # every intent, varied
    with TelemetryWriter(settings.home_dir / "telemetry") as writer:
        for i, example in enumerate(examples):
            rid = f"replayed-{i}"
            writer.submit(InteractionLog(
                module_name="Predict", module_version="base", signature=spec.name, input={"text": example.text},
                output={"intent": example.intent}, timestamp_ms=int(time.time() * 1000), success=True,
                latency_ms=120.0, tokens=60, cost_usd=0.0, model="llamacpp/test", request_id=rid, arm="baseline",
            ).to_dict())
            writer.submit(FeedbackRecord(request_id=rid, signature=spec.name, score=1.0,
                                         timestamp_ms=int(time.time() * 1000)).to_dict())
    return config


def test_a_short_real_cycle_and_a_failing_signature_that_does_not_stop_it(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, single_source_ok=True)
    settings = load_settings(config)
    registry = load_programs(settings)
    options = CycleOptions(signatures=["classify_intent", "extract_booking"], git_target=0, synthetic_target=0,
                           optimizer="labeled", trials=None, min_examples=30)
    summary = run_cycle(settings, registry, options)

    intent = summary["signatures"]["classify_intent"]
    assert [intent["phases"][p]["status"] for p in ("collect", "validate", "gate", "version", "optimize",
                                                   "evaluate", "decide")] == ["ok"] * 7
    assert intent["success"] and intent["collected"] >= 250
    comparison = intent["phases"]["evaluate"]["result"]["comparison"]
    assert comparison["n"] >= 15 and comparison["ci_low"] <= comparison["mean_difference"] <= comparison["ci_high"]
    assert intent["candidate_score"] >= intent["baseline_score"]  # 40 balanced demos vs zero-shot on Gemma
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    assert store.latest_version("classify_intent") == intent["dataset_version"]
    versions = VersionStore(settings.home_dir)
    assert versions.get("classify_intent", intent["candidate_version"]).optimizer == "labeled"
    if intent["deployed"]:
        experiment = ExperimentStore(StateDB.connect(settings)).get(intent["experiment_id"])
        assert experiment.status == "shadow" and experiment.candidate_version == intent["candidate_version"]

    booking = summary["signatures"]["extract_booking"]  # no telemetry, no git, no synthetic: too little data
    assert booking["phases"]["collect"]["status"] == "failed"
    assert "collected: 0 examples, target: 30" in booking["phases"]["collect"]["error"]
    assert all(booking["phases"][p]["status"] == "skipped" for p in ("validate", "optimize", "decide"))
    assert summary["success"] is False  # one signature failed, yet the other ran to the end

    run_dir = Path(summary["output_dir"])
    on_disk = json.loads((run_dir / "orchestration_summary.json").read_text())
    assert on_disk["run_id"] == summary["run_id"] and on_disk["improvement_percent"] == summary["improvement_percent"]
    for sub in ("collected_data/telemetry", "validated_data", "quality_reports", "optimization_results"):
        assert (run_dir / sub).is_dir()
    assert (run_dir / "optimization_results" / "classify_intent.json").is_file()
    phase_logs = {path.name for path in (run_dir / "logs").iterdir()}  # what the phases printed, off the console
    assert {"classify_intent.collect.log", "classify_intent.optimize.log"} <= phase_logs


def test_strict_gates_reject_a_single_source_batch_and_the_cli_exits_1(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, single_source_ok=False)
    result = CliRunner().invoke(app, ["--config", str(config), "cycle", "--signatures", "classify_intent",
                                      "--git-target", "0", "--synthetic-target", "0", "--optimizer", "labeled",
                                      "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    intent = summary["signatures"]["classify_intent"]
    assert intent["phases"]["gate"]["status"] == "failed"
    assert "source_diversity" in intent["phases"]["gate"]["error"]
    assert intent["phases"]["version"]["status"] == "skipped"
    settings = load_settings(config)
    assert DatasetStore(settings.home_dir, settings.data).latest_version("classify_intent") is None


def test_dry_run_stores_nothing(tmp_path: Path) -> None:
    config = write_workspace(tmp_path, single_source_ok=True)
    settings = load_settings(config)
    summary = run_cycle(settings, load_programs(settings),
                        CycleOptions(signatures=["classify_intent"], git_target=0, synthetic_target=0,
                                     optimizer="labeled", trials=None, dry_run=True))
    intent = summary["signatures"]["classify_intent"]
    assert intent["success"] and intent["phases"]["version"]["status"] == "skipped"
    assert intent["candidate_version"] is None and not intent["deployed"]
    assert DatasetStore(settings.home_dir, settings.data).latest_version("classify_intent") is None
    assert VersionStore(settings.home_dir).list("classify_intent") == []
