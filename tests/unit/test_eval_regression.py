"""The daily eval regression on the golden set: a scripted LM, real program versions, the state database, the files."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from monitor_helpers import broken_version, respond_intent
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.data.golden import GoldenExample, add_golden
from ratchet.flywheel import latest_report, run_eval_regression
from ratchet.flywheel import regression as regression_module
from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.setup import LMBundle
from ratchet.monitor.checks import run_checks
from ratchet.monitor.checks.golden import check_golden
from ratchet.programs import load_programs
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.store.db import StateDB

SIG = "classify_intent"
DATA = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77"
ROWS = [json.loads(line) for line in (DATA / "test.jsonl").read_text().splitlines()[::2][:30]]  # several intents
runner = CliRunner()



@pytest.fixture
def lms(scripted_lm):
    lm, _ = scripted_lm(respond_intent)
    return LMBundle.for_lm(lm, CompletionAdapter())


@pytest.fixture
def env(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    registry = load_programs(settings)
    add_golden(settings, SIG, [GoldenExample(values=row, annotator="ana") for row in ROWS], source="annotation",
               registry=registry)
    db = StateDB.connect(settings)
    yield settings, registry, db
    db.dispose()



def test_first_run_then_unchanged_then_a_worse_production(env, lms) -> None:
    settings, registry, db = env
    first = run_eval_regression(settings, registry, db, lms=lms, now=1_700_000_000)
    sig = first.signatures[SIG]
    assert sig.status == "ran" and sig.golden_size == 30 and not first.regression
    (production,) = sig.versions
    assert production.version == "base" and production.roles == ["production"] and production.scores.score == 1.0
    assert production.comparison is None and "no previous run" in production.message
    assert first.signatures["classify_commit"].status == "no_golden"  # skipped, not an error
    assert first.failed == []
    report = sig.report
    assert report.name == "20231114T221320Z.json" and report.with_suffix(".md").is_file()
    assert stat.S_IMODE(report.stat().st_mode) == 0o600 and stat.S_IMODE(report.parent.stat().st_mode) == 0o700
    data = json.loads(report.read_text())
    schema = registry.get(SIG).schema
    hashes = {GoldenExample(values=row).input_hash(schema) for row in ROWS}
    assert set(data["versions"][0]["examples"]) == hashes  # keyed by the stable input hash
    assert ROWS[0]["text"] not in report.read_text()  # hashes only, no user text

    second = run_eval_regression(settings, registry, db, lms=lms, now=1_700_086_400)
    (same,) = second.signatures[SIG].versions
    assert not second.regression and same.against["basis"] == "same version, previous run"
    assert same.comparison["n"] == 30 and same.comparison["mean_difference"] == 0

    worse = broken_version(settings, registry)
    ProductionPointers(db, VersionStore(settings.home_dir)).set(SIG, worse, actor="test", reason="a bad promotion")
    third = run_eval_regression(settings, registry, db, lms=lms, now=1_700_172_800)
    (changed,) = third.signatures[SIG].versions
    assert third.regression and changed.regression and changed.version == worse
    assert changed.against["version"] == "base" and f"production changed since the previous run: base → {worse}" \
        in changed.against["basis"]
    assert changed.comparison["ci_high"] < 0 and changed.comparison["p_value"] < 0.05
    markdown = third.signatures[SIG].report.with_suffix(".md").read_text()
    assert "REGRESSION" in changed.message and "REGRESSION" in markdown


def test_a_model_change_under_the_same_version_is_a_regression(env, lms, scripted_lm) -> None:
    settings, registry, db = env
    run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000)
    lm, _ = scripted_lm(lambda prompt: " card_arrival")  # the provider's model changed underneath
    later = run_eval_regression(settings, registry, db, SIG, lms=LMBundle.for_lm(lm, CompletionAdapter()),
                                now=1_700_000_100)
    (version,) = later.signatures[SIG].versions
    assert version.regression and version.against["basis"] == "same version, previous run"


def test_min_drop_tolerates_a_small_significant_drop(env, lms, scripted_lm) -> None:
    settings, registry, db = env
    run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000)
    settings.flywheel.golden_min_drop = 0.99  # only a total collapse counts
    lm, _ = scripted_lm(lambda prompt: " card_arrival")
    later = run_eval_regression(settings, registry, db, SIG, lms=LMBundle.for_lm(lm, CompletionAdapter()),
                                now=1_700_000_100)
    (version,) = later.signatures[SIG].versions
    assert version.comparison["ci_high"] < 0 and not version.regression


def test_relabelled_golden_examples_are_not_paired(env, lms) -> None:
    settings, registry, db = env
    run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000)
    relabel = [GoldenExample(values={**row, "intent": "exchange_rate" if row["intent"] != "exchange_rate"
                                     else "card_arrival"}) for row in ROWS[:3]]
    add_golden(settings, SIG, relabel, source="annotation", registry=registry)
    later = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_100)
    (version,) = later.signatures[SIG].versions
    assert version.excluded["relabelled"] == 3 and version.comparison["n"] == 27 and not version.regression


def test_a_live_candidate_is_scored_against_production(env, lms) -> None:
    settings, registry, db = env
    candidate = broken_version(settings, registry)
    RolloutController(settings, registry, db=db).start(SIG, candidate, experiment_id="exp_1")
    run = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000)
    by_version = {v.version: v for v in run.signatures[SIG].versions}
    assert by_version["base"].roles == ["production"] and by_version[candidate].roles == ["candidate of exp_1"]
    assert by_version["base"].comparison is None  # first run: production has nothing to compare with
    assert by_version[candidate].against["basis"] == "first run of this candidate: against production in this run"
    assert by_version[candidate].regression and run.regression
    again = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_100)
    assert not again.regression  # the next day: the candidate against its own previous scores
    assert {v.against["basis"] for v in again.signatures[SIG].versions} == {"same version, previous run"}


def test_a_corrupted_previous_report_is_named_and_treated_as_no_previous_run(env, lms) -> None:
    settings, registry, db = env
    first = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000)
    first.signatures[SIG].report.write_text('{"format": 1, "versions": [{"version": "base", "exa')
    later = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_100)
    sig = later.signatures[SIG]
    assert "unreadable report" in sig.previous_problem and "treated as no previous run" in sig.previous_problem
    assert sig.previous is None and sig.versions[0].comparison is None and not later.regression
    assert latest_report(settings.home_dir, SIG)["run_at"] == "2023-11-14T22:15:00+00:00"


def test_reports_of_the_same_second_stay_in_order(env, lms) -> None:
    settings, registry, db = env
    first = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000).signatures[SIG].report
    data = json.loads(first.read_text())
    for i in range(1, 12):  # _10 and _11 sort after _9
        (first.parent / f"{first.stem}_{i}.json").write_text(json.dumps({**data, "run_at": f"run {i}"}))
    assert latest_report(settings.home_dir, SIG)["run_at"] == "run 11"
    again = run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000).signatures[SIG]
    assert again.report.name == f"{first.stem}_12.json" and again.previous["run_at"] == "run 11"


def test_a_model_that_cannot_run_is_an_error_per_signature(env, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.errors import ModelNotAvailableError

    settings, registry, db = env

    def unavailable(*args: object, **kwargs: object) -> LMBundle:
        raise ModelNotAvailableError("llama.cpp crashed in its self-test")

    monkeypatch.setattr(regression_module, "build_lms", unavailable)
    run = run_eval_regression(settings, registry, db)
    assert run.signatures[SIG].status == "error" and run.failed == [SIG]
    assert "llama.cpp crashed" in run.signatures[SIG].reason
    assert run.signatures["extract_booking"].status == "no_golden"
    assert not (settings.home_dir / "eval_reports" / SIG).exists()


def test_check_golden_alerts_from_the_newest_report_and_writes_gauges(env, lms) -> None:
    settings, registry, db = env
    run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_000)
    assert check_golden(settings, registry=registry).alerts == []
    worse = broken_version(settings, registry)
    ProductionPointers(db, VersionStore(settings.home_dir)).set(SIG, worse, actor="test", reason="bad")
    run_eval_regression(settings, registry, db, SIG, lms=lms, now=1_700_000_100)
    result = check_golden(settings, registry=registry, export=True)
    (alert,) = result.alerts
    assert alert.title == "Golden Set Regression" and alert.condition == f"golden/regression/{SIG}/{worse}"
    assert alert.level == "warning" and alert.details["reference_version"] == "base"
    text = (settings.home_dir / "metrics" / "ratchet_golden.prom").read_text()
    assert f'ratchet_golden_score{{signature="{SIG}",version="{worse}"}} 0.3333' in text
    assert f'ratchet_golden_regression{{signature="{SIG}",version="{worse}"}} 1.0' in text
    assert "ratchet_eval_regression_last_run_timestamp_seconds" in text
    assert run_checks(settings, ["golden"], registry=registry).exit_code == 1


def test_the_cli_exit_codes_output_and_gauges(env, lms, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    settings, registry, db = env
    (tmp_path / "ratchet.toml").write_text('home = "home"\n')
    monkeypatch.setattr(regression_module, "build_lms", lambda *a, **k: lms)
    first = runner.invoke(app, ["eval-regression", "--json", "--no-dispatch"])
    assert first.exit_code == 0, first.output
    data = json.loads(first.stdout)
    assert data["signatures"][SIG]["status"] == "ran" and data["signatures"]["classify_commit"]["status"] == "no_golden"
    assert Path(data["textfile"]).is_file()
    same = runner.invoke(app, ["eval-regression", "-s", SIG])
    assert same.exit_code == 0, same.output
    assert "held" in same.stdout and "last 2 run(s)" in same.stdout and "█" in same.stdout
    worse = broken_version(settings, registry)
    ProductionPointers(db, VersionStore(settings.home_dir)).set(SIG, worse, actor="test", reason="bad")
    regressed = runner.invoke(app, ["eval-regression", "-s", SIG])
    assert regressed.exit_code == 1, regressed.output
    assert "REGRESSION" in regressed.stdout and "Golden Set Regression" in regressed.stderr
    text = (settings.home_dir / "metrics" / "ratchet_golden.prom").read_text()
    assert f'ratchet_golden_regression{{signature="{SIG}",version="{worse}"}} 1.0' in text
    alerts = (settings.home_dir / "alerts").glob("*")
    assert any("Golden Set Regression" in p.read_text() for p in alerts if p.is_file())
    unknown = runner.invoke(app, ["eval-regression", "-s", "nope"])
    assert unknown.exit_code == 2 and "nope" in unknown.stderr


# --- the deploy decision reports the candidate's golden score ---------------------------------------------------

def test_the_deploy_decision_reports_the_golden_score_without_gating(env, scripted_lm, capsys) -> None:
    from ratchet.cli.cycle_cmd import print_cycle
    from ratchet.cli.optimize_cmd import print_optimization
    from ratchet.data.datasets import DatasetStore
    from ratchet.data.records import ExampleRecord
    from ratchet.loop.cycle import _golden_brief
    from ratchet.optimize.run import run_optimization

    settings, registry, _ = env
    train = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()][:150]
    DatasetStore(settings.home_dir, settings.data, registry=registry).create(
        SIG, [ExampleRecord(values=r, signature=SIG, source="manual") for r in train], source="manual")
    labels = {r["text"]: r["intent"] for r in [*train, *ROWS]}

    def knows_with_demos(prompt: str) -> str:  # right only when the prompt carries demos: the candidate wins
        question = prompt.rsplit("Text:", 1)[-1].split("\n", 1)[0].strip()
        return " " + labels[question] if prompt.count("Text:") > 2 and question in labels else " terminate_account"

    lm, _ = scripted_lm(knows_with_demos)
    bundle = LMBundle.for_lm(lm, CompletionAdapter())
    result = run_optimization(settings, registry, SIG, optimizer="labeled", lms=bundle)
    golden = result.golden
    assert golden is not None and golden["n"] == 30 and golden["gates"] is False
    assert golden["candidate"]["score"] == 1.0 and golden["baseline"]["score"] < 0.2 and golden["better"]
    assert golden["candidate"]["version"] == result.candidate_version and golden["baseline"]["version"] == "base"
    assert "significantly better (reported, not gating)" in result.decision["golden"]
    assert VersionStore(settings.home_dir).get(SIG, result.candidate_version).scores["golden"] == 1.0
    data = result.to_dict()
    print_optimization(data)
    assert "golden set" in capsys.readouterr().out
    brief = _golden_brief(data["golden"])
    assert brief["candidate_score"] == 1.0 and brief["worse"] is False
    summary = {"run_id": "run_x", "dry_run": False, "output_dir": "/tmp/x", "success": True, "seconds": 1,
               "signatures": {SIG: {"phases": {}, "errors": [], "decision": result.decision, "golden": brief}}}
    print_cycle(summary)
    assert "(reported, not gating)" in capsys.readouterr().out


def test_no_golden_set_no_golden_report_in_the_decision(tmp_path: Path, scripted_lm) -> None:
    from ratchet.data.datasets import DatasetStore
    from ratchet.data.records import ExampleRecord
    from ratchet.optimize.run import run_optimization

    settings = Settings(home=tmp_path / "home")
    registry = load_programs(settings)
    train = [json.loads(line) for line in (DATA / "train.jsonl").read_text().splitlines()][:60]
    DatasetStore(settings.home_dir, settings.data, registry=registry).create(
        SIG, [ExampleRecord(values=r, signature=SIG, source="manual") for r in train], source="manual")
    lm, _ = scripted_lm(lambda prompt: " card_arrival")
    bundle = LMBundle.for_lm(lm, CompletionAdapter())
    result = run_optimization(settings, registry, SIG, optimizer="labeled", lms=bundle, save_candidate=False)
    assert result.golden is None and "golden" not in result.decision and result.to_dict()["golden"] is None
