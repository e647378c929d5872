"""Canary runs on a scripted LM and the real state database: fixed probes, the interval, the trigger, the files."""

from __future__ import annotations

import dataclasses
import json
import stat
import time
from pathlib import Path

import pytest
from monitor_helpers import INTENTS, broken_version, records, respond_intent
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.errors import ModelNotAvailableError
from ratchet.evaluation import fewshot_program
from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.setup import LMBundle
from ratchet.monitor.canary import ensure_probes, probe_path, run_canaries
from ratchet.monitor.canary import runner as runner_module
from ratchet.monitor.checks.canary import check_canary
from ratchet.programs import load_programs
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.rollout.canary import experiment_canary_check
from ratchet.store.canaries import canary_history, record_canary_runs
from ratchet.store.db import StateDB

SIG = "classify_intent"
LABELS = INTENTS


@pytest.fixture
def lms(scripted_lm):
    lm, engine = scripted_lm(respond_intent)
    return LMBundle.for_lm(lm, CompletionAdapter()), engine


@pytest.fixture
def env(tmp_path: Path, state_db_url: str):
    settings = Settings(home=tmp_path / "home", database_url=state_db_url)
    settings.monitor.canary.probes = 30
    registry = load_programs(settings)
    db = StateDB.connect(settings)
    yield settings, registry, db
    db.dispose()



def test_probes_are_sampled_once_and_stay_fixed_across_runs(env, lms) -> None:
    settings, registry, db = env
    bundle, _ = lms
    first = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], force=True)
    path = probe_path(settings.home_dir, SIG)
    content, probes = path.read_bytes(), first.signatures[SIG].probes
    assert probes.created and len(probes) == 30 and probes.source == "bundled"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert all(json.loads(line)["text"] in LABELS for line in content.decode().splitlines())
    DatasetStore(settings.home_dir, settings.data, registry=registry).create(SIG, records(0, 200, 80.0), source="git")
    second = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], force=True)
    assert path.read_bytes() == content and not second.signatures[SIG].probes.created  # a new dataset moves nothing
    runs = canary_history(db, SIG, "base", limit=5)
    assert len(runs) == 2 and runs[0].probe_set == runs[1].probe_set == probes.fingerprint
    assert runs[0].scores == runs[1].scores and set(runs[0].scores) == set(probes.ids) and runs[0].score == 1.0
    settings.monitor.canary.seed = 1
    again = ensure_probes(registry.get(SIG), settings.home_dir, settings.monitor.canary, regenerate=True,
                          pointers=ProductionPointers(db, VersionStore(settings.home_dir)),
                          datasets=DatasetStore(settings.home_dir, settings.data, registry=registry))
    assert again.created and again.source == "latest_dataset" and again.fingerprint != probes.fingerprint
    assert json.loads(path.with_name(f"{SIG}.meta.json").read_text())["source"] == "latest_dataset"


def test_probes_come_from_productions_dataset_test_split_first(env) -> None:
    settings, registry, db = env
    spec = registry.get(SIG)
    datasets = DatasetStore(settings.home_dir, settings.data, registry=registry)
    trained_on = datasets.create(SIG, records(0, 300, 80.0), source="git").version
    versions = VersionStore(settings.home_dir)
    versions.save(spec, fewshot_program(spec, 2), lm="m", adapter="a", dataset_version=trained_on)
    ProductionPointers(db, versions).set(SIG, "v1", actor="test", reason="test")
    time.sleep(1.1)  # dataset versions are named by the second
    datasets.create(SIG, records(300, 600, 80.0), source="git")
    probes = ensure_probes(spec, settings.home_dir, settings.monitor.canary,
                           pointers=ProductionPointers(db, versions), datasets=datasets)
    test_texts = {r.values["text"] for r in datasets.load(SIG, trained_on).by_split("test")}
    assert probes.source == "production" and f"dataset {trained_on}" in probes.description
    assert 0 < len(probes) <= 30 and {e.text for e in probes.examples} <= test_texts


def test_a_candidate_that_answers_wrongly_scores_lower_and_fires_the_trigger(env, lms) -> None:
    settings, registry, db = env
    bundle, _ = lms
    candidate = broken_version(settings, registry)
    controller = RolloutController(settings, registry, db=db)
    controller.start(SIG, candidate, experiment_id="exp_1")
    report = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG])
    outcome = report.signatures[SIG]
    runs = {v.version: v for v in outcome.versions}
    assert runs["base"].roles == ["production", "baseline of exp_1"] and runs[candidate].roles == ["candidate of exp_1"]
    assert runs["base"].run.score == 1.0 and runs[candidate].run.score < 0.3
    assert runs["base"].run.pass_id == runs[candidate].run.pass_id
    assert outcome.experiments["exp_1"].fired and "on the same 30 probes" in outcome.experiments["exp_1"].message
    assert experiment_canary_check(db, controller.store.get("exp_1"), settings.monitor.canary).fired
    text = report.textfile.read_text()
    assert f'ratchet_canary_score{{signature="{SIG}",version="base"}} 1.0' in text
    assert f'ratchet_canary_probes{{signature="{SIG}",version="{candidate}"}} 30.0' in text
    assert "ratchet_canary_last_run_timestamp_seconds " in text and "ratchet_canary_degraded{" not in text
    assert stat.S_IMODE(report.textfile.stat().st_mode) == 0o644
    controller.rollback("exp_1", reason="test")
    run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], force=True)
    assert f'version="{candidate}"' not in report.textfile.read_text()  # an ended experiment's version drops out


def test_the_interval_is_respected_and_a_new_candidate_is_due_at_once(env, lms) -> None:
    settings, registry, db = env
    bundle, engine = lms
    now = time.time()
    assert run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], now=now).ran == [SIG]
    calls = engine.calls
    later = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], now=now + 60)
    assert later.signatures[SIG].status == "not_due" and later.textfile is None and engine.calls == calls
    assert later.signatures[SIG].next_due == pytest.approx(now + 30 * 60, abs=30)
    candidate = broken_version(settings, registry)
    RolloutController(settings, registry, db=db).start(SIG, candidate, experiment_id="exp_1")
    assert run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], now=now + 120).ran == [SIG]
    assert engine.calls == calls + 60  # production again (same pass) and the new candidate
    assert run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], now=now + 180).ran == []
    assert run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], now=now + 31 * 60).ran == [SIG]
    settings.monitor.canary.enabled = False
    off = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], now=now + 99 * 60)
    assert off.signatures[SIG].status == "off" and off.ran == []
    assert run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], force=True).ran == [SIG]


def test_bad_probe_lines_are_skipped_and_counted_and_an_unusable_file_is_a_clear_error(env, lms, tmp_path) -> None:
    settings, registry, db = env
    bundle, engine = lms
    texts = list(LABELS)[:3]
    good = [json.dumps({"text": t, "intent": LABELS[t]}) for t in texts]
    probes = tmp_path / "probes.jsonl"
    probes.write_text("\n".join([good[0], "{not json", good[1], json.dumps({"text": "no label"}),
                                 json.dumps({"text": "x", "intent": "not_an_intent"}), good[2], good[0]]) + "\n")
    settings.monitor.canary.probe_files = {SIG: probes}
    report = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG])
    used = report.signatures[SIG].probes
    assert (len(used), used.skipped, used.source) == (3, 4, "file")
    assert any("invalid JSON" in e for e in used.errors) and any("repeats an earlier input" in e for e in used.errors)
    assert canary_history(db, SIG, "base", limit=1)[0].n == 3
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n" + json.dumps({"text": "no label"}) + "\n")
    calls = engine.calls
    failed = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], probe_file=bad, force=True)
    outcome = failed.signatures[SIG]
    assert outcome.status == "error" and engine.calls == calls and failed.textfile is None
    assert f"{bad}: no usable canary probes for '{SIG}' (2 skipped: bad.jsonl:1: invalid JSON" in outcome.reason
    assert "each line needs the inputs ['text'] and the outputs ['intent']" in outcome.reason


def test_a_version_that_cannot_be_loaded_is_reported_and_the_others_still_run(env, lms) -> None:
    settings, registry, db = env
    bundle, _ = lms
    candidate = broken_version(settings, registry)
    RolloutController(settings, registry, db=db).start(SIG, candidate, experiment_id="exp_1")
    program = settings.home_dir / "programs" / SIG / candidate / "program.json"
    program.chmod(0o600)
    program.write_text(program.read_text().replace("BROKEN", "TAMPERED"))
    outcome = run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG]).signatures[SIG]
    runs = {v.version: v for v in outcome.versions}
    assert runs["base"].run is not None and runs[candidate].run is None
    assert "does not match the fingerprint" in runs[candidate].error
    assert "waiting for a canary run" in outcome.experiments["exp_1"].message


def test_check_canary_alerts_on_a_drop_and_on_stale_runs(env, lms) -> None:
    settings, registry, db = env
    bundle, _ = lms
    for _ in range(3):
        run_canaries(settings, registry, db=db, lms=bundle, signatures=[SIG], force=True)
    assert check_canary(settings, db=db, registry=registry).alerts == []
    newest = canary_history(db, SIG, "base", limit=1)[0]
    worse = {k: 0.0 for k in list(newest.scores)[:15]}
    record_canary_runs(db, [dataclasses.replace(newest, scores={**newest.scores, **worse}, score=0.5,
                                                at=newest.at + 1, pass_id="worse")])
    result = check_canary(settings, db=db, registry=registry)
    (alert,) = result.alerts
    assert alert.title == "Canary Score Dropped" and alert.condition == f"canary/production/{SIG}"
    assert alert.details["drop"] == 0.5 and "0.500 in the newest run against 1.000" in alert.message
    assert f"canary/production/{SIG}" in result.scopes and result.summary["signatures"][SIG]["status"] == "degraded"
    stale = check_canary(settings, db=db, registry=registry, now=newest.at + 4 * 30 * 60)
    assert {a.title for a in stale.alerts} == {"Canary Score Dropped", "Canary Runs Stale"}


def test_the_cli_runs_shows_probes_and_history(env, lms, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings, registry, db = env
    bundle, _ = lms
    (tmp_path / "ratchet.toml").write_text(f'home = "home"\ndatabase_url = "{settings.database_url}"\n'
                                           "[monitor.canary]\nprobes = 30\n")
    monkeypatch.setattr(runner_module, "build_lms", lambda *a, **k: bundle)
    candidate = broken_version(settings, registry)
    RolloutController(settings, registry, db=db).start(SIG, candidate, experiment_id="exp_1")
    cli = CliRunner()
    result = cli.invoke(app, ["canary", "run", "-s", SIG, "--json"])
    assert result.exit_code == 1, result.output  # the candidate's trigger fires
    data = json.loads(result.stdout)
    assert data["ran"] == [SIG] and data["signatures"][SIG]["experiments"]["exp_1"]["fired"]
    human = cli.invoke(app, ["canary", "run", "-s", SIG])
    assert human.exit_code == 1 and "roll back" in human.stdout and "candidate of exp_1" in human.stdout
    history = json.loads(cli.invoke(app, ["canary", "history", SIG, "--json"]).stdout)
    assert len(history) == 4 and {r["version"] for r in history} == {"base", candidate}
    shown = cli.invoke(app, ["canary", "probes", "-s", SIG, "--json"])
    assert json.loads(shown.stdout)[SIG]["probes"] == 30
    assert cli.invoke(app, ["canary", "run", "--probes", "x.jsonl"]).exit_code == 2
    missing = cli.invoke(app, ["canary", "run", "-s", SIG, "--probes", "missing.jsonl"])
    assert missing.exit_code == 2 and "missing.jsonl: no such file" in missing.stderr
    check = cli.invoke(app, ["monitor", "check-canary", "--no-dispatch", "--json"])
    assert check.exit_code == 0, check.output
    (checked,) = json.loads(check.stdout)["checks"]
    assert checked["check"] == "canary" and checked["summary"]["signatures"][SIG]["status"] == "not_enough_data"
    shown = cli.invoke(app, ["monitor", "check-canary", "--no-dispatch"])
    assert "production against its trailing runs" in shown.stdout and "1 earlier canary run" in shown.stdout


def test_a_signature_without_any_probe_source_is_skipped_not_failed(env, lms) -> None:
    settings, registry, db = env
    bundle, _ = lms
    report = run_canaries(settings, registry, db=db, lms=bundle)  # classify_commit has no bundled test data
    skipped = report.signatures["classify_commit"]
    assert skipped.status == "no_probes" and "no dataset test split and no bundled test data" in skipped.reason
    assert not probe_path(settings.home_dir, "classify_commit").exists()
    assert sorted(report.ran) == ["classify_intent", "extract_booking"]


def test_a_model_that_cannot_run_is_reported_per_signature(env, monkeypatch: pytest.MonkeyPatch) -> None:
    settings, registry, db = env

    def unavailable(*args: object, **kwargs: object) -> LMBundle:
        raise ModelNotAvailableError("llama.cpp crashed in its self-test")

    monkeypatch.setattr(runner_module, "build_lms", unavailable)
    report = run_canaries(settings, registry, db=db, signatures=[SIG])
    assert report.signatures[SIG].status == "error" and report.ran == [] and report.textfile is None
    assert report.signatures[SIG].reason == "the model is not available: llama.cpp crashed in its self-test"
    assert canary_history(db, SIG, None, limit=1) == []


def test_the_controller_runs_the_canaries_when_due(env, lms) -> None:
    """The supervising controller starts a canary pass in its own thread; its scores reach the database."""
    from ratchet.loop.supervisor import Supervisor

    settings, registry, db = env
    bundle, _ = lms
    supervisor = Supervisor(settings, registry, owner="controller:a", lms=bundle)
    assert supervisor.tick().leader
    supervisor.canary_thread.join(timeout=120)
    production = canary_history(db, SIG, "base", limit=10)
    assert production and production[0].n == 30 and supervisor.errors["canary"] == 0
    supervisor.tick()  # not due again within the interval: the pass is skipped at once
    supervisor.canary_thread.join(timeout=60)
    assert len(canary_history(db, SIG, "base", limit=10)) == 1
