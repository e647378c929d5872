"""Drift detection: its statistics, its reference, the live window, and the check on real Banking77 shifts."""

import gzip
import json
import math
import os
import random
import shutil
import subprocess
import time
from pathlib import Path

import dspy
import pytest
from monitor_helpers import SIG

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.examples.classify_intent import DATA
from ratchet.monitor import AlertDispatcher
from ratchet.monitor.checks import check_drift, run_checks
from ratchet.monitor.drift import assess_drift, judge_input, label_field, load_reference, read_live
from ratchet.monitor.drift.exposition import TEXTFILE_NAME, read_snapshot
from ratchet.monitor.drift.reference import MIN_HELDOUT
from ratchet.monitor.drift.stats import (
    count_labels,
    excess_lower_bound,
    homogeneity_p_value,
    psi,
    psi_contributions,
    wilson_interval,
)
from ratchet.programs import ProgramRegistry, load_programs, program
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore
from ratchet.serve import metrics
from ratchet.store.db import StateDB

UNSEEN = Path(__file__).parent / "data" / "banking77_unseen_intents.jsonl"


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


TRAIN, TEST, OTHER = rows(DATA / "train.jsonl"), rows(DATA / "test.jsonl"), rows(UNSEEN)


class Sentiment(dspy.Signature):
    """A signature with no bundled data and a free-text output."""

    text: str = dspy.InputField()
    summary: str = dspy.OutputField()


@pytest.fixture(scope="module")
def registry() -> ProgramRegistry:
    """classify_intent and extract_booking as shipped, plus a program with no data anywhere."""
    shipped = load_programs(Settings())
    registry = ProgramRegistry()
    for name in ("classify_intent", "extract_booking"):
        registry.register(shipped.get(name))
    program("summarise", metric=lambda example, prediction, trace=None: 1.0, registry=registry)(
        lambda: dspy.Predict(Sentiment))
    return registry


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.monitor.retry_backoff_s = 0
    return settings


def call(signature: str, inputs: dict, outputs: dict, *, at_ms: int, success: bool = True,
         arm: str | None = "baseline", version: str = "base") -> dict:
    return {"record": "interaction", "module_name": "Predict", "module_version": version, "signature": signature,
            "input": inputs, "output": outputs if success else {}, "timestamp_ms": at_ms, "success": success,
            "arm": arm}


def write_telemetry(settings: Settings, lines: list, name: str = "interactions.jsonl") -> Path:
    directory = settings.home_dir / "telemetry"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    text = "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines)
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def intent_calls(examples: list[dict], *, label: str | None = None, now: float | None = None) -> list[dict]:
    """Live calls of classify_intent: the example's text, answered with its intent (or ``label``)."""
    now_ms = int((now or time.time()) * 1000)
    return [call(SIG, {"text": e["text"]}, {"intent": label or e["intent"]}, at_ms=now_ms - 1000 * i)
            for i, e in enumerate(examples)]


# -- statistics -----------------------------------------------------------------------------------------------


def test_psi_is_zero_for_equal_distributions_and_finite_with_empty_bins() -> None:
    bins = ("a", "b", "c")
    same = count_labels(["a"] * 50 + ["b"] * 50, bins)
    assert same == {"a": 50, "b": 50, "c": 0}
    assert psi(same, dict(same)) == 0.0
    shifted = count_labels(["c"] * 100, bins)
    value = psi(same, shifted)
    assert math.isfinite(value) and value > 3
    # by hand: (50.5, 50.5, 0.5) / 101.5 against (0.5, 0.5, 100.5) / 101.5
    p, q = [50.5 / 101.5, 50.5 / 101.5, 0.5 / 101.5], [0.5 / 101.5, 0.5 / 101.5, 100.5 / 101.5]
    assert value == pytest.approx(sum((qi - pi) * math.log(qi / pi) for pi, qi in zip(p, q, strict=True)))
    assert sum(psi_contributions(same, shifted).values()) == pytest.approx(value)
    assert count_labels(["a", "zzz"], bins) == {"a": 1, "b": 0, "c": 0, "(other)": 1}


def test_homogeneity_test_separates_noise_from_shift() -> None:
    reference = {"a": 500, "b": 300, "c": 200}
    assert homogeneity_p_value(reference, {"a": 52, "b": 29, "c": 19}) > 0.5
    assert homogeneity_p_value(reference, {"a": 10, "b": 10, "c": 80}) < 1e-10
    assert homogeneity_p_value(reference, {"a": 0, "b": 0, "c": 0}) == 1.0


def test_wilson_and_the_excess_lower_bound() -> None:
    low, high = wilson_interval(0, 10, 1.959964)
    assert low == 0.0 and high == pytest.approx(0.2775, abs=1e-4)  # the textbook value
    assert wilson_interval(5, 0, 1.96) == (0.0, 1.0)
    bound = excess_lower_bound(40, 100, 10, 100, 0.05)
    assert 0.15 < bound < 0.30  # below the point difference, well above 0
    assert excess_lower_bound(10, 100, 10, 100, 0.05) < 0  # no excess: the bound is negative
    assert excess_lower_bound(40, 1000, 10, 100, 0.05) < excess_lower_bound(400, 1000, 100, 1000, 0.05)
    with pytest.raises(ValueError):
        excess_lower_bound(1, 0, 1, 10, 0.05)


def test_input_verdict_needs_the_margin_at_confidence(settings: Settings) -> None:
    drift = settings.monitor.drift
    assert not judge_input(16, 100, 11, 100, drift).flagged  # 5 points more: within noise
    assert judge_input(45, 100, 11, 100, drift).flagged
    drift.novelty_margin = 0.30
    assert not judge_input(45, 100, 11, 100, drift).flagged  # 34 points more, but not surely 30


def test_a_window_too_small_to_judge_is_refused() -> None:
    with pytest.raises(ValueError, match=r"max_samples \(50\) is below min_samples \(100\)"):
        Settings(monitor={"drift": {"max_samples": 50}})
    assert Settings(monitor={"drift": {"max_samples": 100}}).monitor.drift.max_samples == 100


# -- reference --------------------------------------------------------------------------------------------------


def records(examples: list[dict]) -> list[ExampleRecord]:
    return [ExampleRecord(values=dict(e), signature=SIG, source="git") for e in examples]


def test_reference_prefers_productions_dataset_then_latest_then_bundled(settings: Settings,
                                                                        registry: ProgramRegistry) -> None:
    spec = registry.get(SIG)
    versions = VersionStore(settings.home_dir)
    pointers = ProductionPointers(StateDB.connect(settings), versions)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    reference, notes = load_reference(spec, pointers=pointers, datasets=store)
    assert reference.kind == "bundled" and len(reference.train) == len(TRAIN) and len(reference.heldout) == len(TEST)
    assert "no dataset versions" in notes and "bundled" in reference.description

    created = store.create(SIG, records(TRAIN[:600]), source="git")
    first = created.version
    reference, _ = load_reference(spec, pointers=pointers, datasets=store)
    assert (reference.kind, reference.dataset_version) == ("latest_dataset", first)
    assert len(reference.train) + len(reference.heldout) == created.example_count
    assert reference.heldout_from.startswith("the version")

    v1 = versions.save(spec, spec.build(), lm="test", adapter="test", dataset_version=first)
    pointers.set(SIG, v1.version, actor="test", reason="test")
    second = store.add(SIG, records(TRAIN[600:]), source="git").version
    reference, _ = load_reference(spec, pointers=pointers, datasets=store)
    assert (reference.kind, reference.dataset_version, reference.program_version) == ("production", first, "v1")
    assert reference.description == f"dataset {first} (train split) of production version v1"

    v2 = versions.save(spec, spec.build(), lm="test", adapter="test", dataset_version="v20990101_000000")
    pointers.set(SIG, v2.version, actor="test", reason="test")
    reference, notes = load_reference(spec, pointers=pointers, datasets=store)
    assert (reference.kind, reference.dataset_version) == ("latest_dataset", second)
    assert any("v20990101_000000 unreadable" in note for note in notes)


def test_too_few_held_out_examples_take_a_stable_fifth_of_train(settings: Settings,
                                                                 registry: ProgramRegistry) -> None:
    settings.data.split_ratios = {"train": 1.0, "dev": 0.0, "test": 0.0}
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    stored = store.create(SIG, records(TRAIN[:300]), source="git").example_count
    versions = VersionStore(settings.home_dir)
    pointers = ProductionPointers(StateDB.connect(settings), versions)
    reference, _ = load_reference(registry.get(SIG), pointers=pointers, datasets=store)
    assert len(reference.heldout) >= MIN_HELDOUT and len(reference.train) + len(reference.heldout) == stored
    assert "stable 20%" in reference.heldout_from
    again, _ = load_reference(registry.get(SIG), pointers=pointers, datasets=store)
    assert again.heldout == reference.heldout  # the same examples every time
    texts = {e["text"] for e in reference.train}
    assert not any(e["text"] in texts for e in reference.heldout)


def test_a_program_without_any_data_has_no_reference(settings: Settings, registry: ProgramRegistry) -> None:
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    pointers = ProductionPointers(StateDB.connect(settings), VersionStore(settings.home_dir))
    reference, notes = load_reference(registry.get("summarise"), pointers=pointers, datasets=store)
    assert reference is None and "no bundled train data" in notes


def test_output_drift_needs_a_single_literal_label(registry: ProgramRegistry) -> None:
    assert label_field(registry.get(SIG))[:2][0] == "intent" and len(label_field(registry.get(SIG))[1]) == 10
    name, _, why = label_field(registry.get("extract_booking"))
    assert name is None and "5 output fields" in why
    name, _, why = label_field(registry.get("summarise"))
    assert name is None and "not a Literal" in why


# -- the live window --------------------------------------------------------------------------------------------


def test_live_window_skips_bad_lines_and_other_calls(settings: Settings) -> None:
    now = time.time()
    now_ms = int(now * 1000)
    ok = [call(SIG, {"text": f"hello {i}"}, {"intent": "card_arrival"}, at_ms=now_ms - i) for i in range(5)]
    old = write_telemetry(settings, [call(SIG, {"text": "old"}, {"intent": "age_limit"}, at_ms=now_ms - 10 ** 9)],
                          "interactions-20200101T000000-1-0.jsonl.gz")
    os.utime(old, (now - 10 ** 6, now - 10 ** 6))  # rotated long ago: not even opened
    write_telemetry(settings, [
        ok[0], "{torn", "[1, 2]", "\x00garbage", {"record": "interaction", "signature": SIG},
        {"record": "feedback", "request_id": "r", "signature": SIG, "score": 1, "timestamp_ms": now_ms},
        call(SIG, {"text": "failed"}, {}, at_ms=now_ms, success=False),
        call(SIG, {"text": "candidate"}, {"intent": "age_limit"}, at_ms=now_ms, arm="candidate"),
        call(SIG, {"text": "yesterday"}, {"intent": "age_limit"}, at_ms=now_ms - 2 * 86400 * 1000),
        call("extract_booking", {"text": "table for 2"}, {"people": "2"}, at_ms=now_ms, arm=None), *ok[1:],
    ])
    live, scan = read_live(settings.home_dir / "telemetry", since_ms=now_ms - 3600 * 1000, max_samples=3)
    assert scan.files == 1 and scan.files_before_window == 1
    assert scan.read.bad_lines == 3 and scan.invalid_records == 1  # 3 lines not JSON objects; 1 lacking fields
    assert dict(scan.excluded) == {"failed_call": 1, "candidate_arm": 1, "before_window": 1}
    assert live[SIG].in_window == 5 and len(live[SIG]) == 3  # the last three written kept
    assert [inputs["text"] for inputs, _ in live[SIG].calls] == ["hello 2", "hello 3", "hello 4"]
    assert len(live["extract_booking"]) == 1  # seed-format logs have no arm: taken as production
    assert json.dumps(scan.to_dict())


def test_no_telemetry_at_all_is_not_enough_data(settings: Settings, registry: ProgramRegistry) -> None:
    report = assess_drift(settings, registry)
    assert {sig.status for sig in report.signatures.values()} == {"not_enough_data"}
    assert "0 successful baseline call(s)" in report.signatures[SIG].reason
    result = check_drift(settings, registry=registry)
    assert result.alerts == [] and result.scopes == []


# -- the check on real shifts -------------------------------------------------------------------------------------


def test_in_distribution_traffic_is_not_flagged_and_unseen_intents_are(settings: Settings,
                                                                       registry: ProgramRegistry) -> None:
    """Reference: a dataset of the train split; live: the upstream test split (never in the dataset), then half
    of it replaced by intents the program does not know (answered with labels it does know)."""
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    version = store.create(SIG, records(TRAIN), source="git").version
    rng = random.Random(0)
    same = rng.sample(TEST, 150)
    write_telemetry(settings, intent_calls(same))
    result = check_drift(settings, registry=registry)
    sig = result.summary["signatures"][SIG]
    assert result.alerts == [] and sig["status"] == "ok", sig
    assert sig["reference"]["kind"] == "latest_dataset" and sig["reference"]["dataset_version"] == version
    assert sig["output"]["psi"] < 0.25 and sig["input"]["excess_lower_bound"] < 0.05
    assert set(result.scopes) == {f"drift/output/{SIG}", f"drift/input/{SIG}"}

    confused = rng.choices(sorted({e["intent"] for e in TRAIN}), k=1)[0]  # the program maps the unknown to one label
    shifted = same[:75] + [{"text": e["text"], "intent": confused} for e in OTHER[:75]]
    write_telemetry(settings, intent_calls(shifted))
    result = check_drift(settings, registry=registry)
    alerts = {alert.title: alert for alert in result.alerts}
    assert set(alerts) == {"Output Drift", "Input Drift"}
    for alert in alerts.values():
        assert alert.level == "warning" and alert.details["reference_kind"] == "latest_dataset"
        assert version in alert.message and "the next cycle trains on it" in alert.details["hint"]
    assert alerts["Input Drift"].condition == f"drift/input/{SIG}"
    assert alerts["Input Drift"].details["live_novel_share"] > 0.35 > alerts["Input Drift"].details[
        "reference_novel_share"]
    assert alerts["Output Drift"].details["psi"] > 0.25
    assert alerts["Output Drift"].details["top_shifts"][0]["label"] == confused


def test_inputs_only_for_a_program_without_a_single_label(settings: Settings, registry: ProgramRegistry) -> None:
    now_ms = int(time.time() * 1000)
    bookings = rows(registry.get("extract_booking").data["test"])[:120]
    write_telemetry(settings, [call("extract_booking", {"text": b["text"]}, {"people": b["people"]}, at_ms=now_ms)
                               for b in bookings])
    sig = check_drift(settings, registry=registry).summary["signatures"]["extract_booking"]
    assert sig["status"] == "ok" and sig["input"] is not None and sig["output"] is None
    assert "no single label" in sig["output_skipped"]


def test_alerts_resolve_and_metrics_are_written_only_when_dispatching(settings: Settings,
                                                                      registry: ProgramRegistry) -> None:
    shifted = [{"text": e["text"], "intent": "card_arrival"} for e in OTHER[:120]]
    write_telemetry(settings, intent_calls(shifted))
    run = run_checks(settings, ["drift"], None, registry=registry)
    assert run.exit_code == 1 and not (settings.home_dir / "metrics").exists()  # --no-dispatch writes nothing
    dispatcher = AlertDispatcher.from_settings(settings)
    run = run_checks(settings, ["drift"], dispatcher, registry=registry)
    assert {d.action for d in run.deliveries} == {"new"} and len(run.deliveries) == 2
    text = (settings.home_dir / "metrics" / TEXTFILE_NAME).read_text()
    assert f'ratchet_drift_flagged{{kind="input",signature="{SIG}"}} 1.0' in text
    assert 'ratchet_drift_samples{signature="summarise"} 0.0' in text and "summarise" not in text.split(
        "ratchet_drift_flagged")[1]  # no verdict, no flag sample
    assert read_snapshot(settings.home_dir)["signatures"][SIG]["status"] == "drift"

    write_telemetry(settings, intent_calls(random.Random(1).sample(TEST, 150)))
    run = run_checks(settings, ["drift"], dispatcher, registry=registry)
    assert run.exit_code == 0
    assert sorted(d.action for d in run.deliveries) == ["resolved", "resolved"]
    text = (settings.home_dir / "metrics" / TEXTFILE_NAME).read_text()
    assert f'ratchet_drift_flagged{{kind="input",signature="{SIG}"}} 0.0' in text

    (settings.home_dir / "telemetry" / "interactions.jsonl").unlink()  # no traffic: nothing judged, nothing resolved
    result = check_drift(settings, registry=registry)
    assert result.scopes == [] and result.summary["signatures"][SIG]["status"] == "not_enough_data"


# -- metrics on /metrics ------------------------------------------------------------------------------------------


def test_serve_exposes_the_drift_textfile(settings: Settings, registry: ProgramRegistry,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    write_telemetry(settings, intent_calls([{"text": e["text"], "intent": "age_limit"} for e in OTHER[:120]]))
    check_drift(settings, registry=registry, export=True)
    directory = settings.home_dir / "metrics"
    assert oct((directory / TEXTFILE_NAME).stat().st_mode & 0o777) == "0o644"  # no user text: node-exporter may read
    (directory / "broken.prom").write_text("this is { not the text format\n")
    (directory / "clash.prom").write_text("# TYPE ratchet_routing_version gauge\nratchet_routing_version 99\n")
    assert b"ratchet_drift" not in metrics.render_latest()  # no directory configured: nothing added
    monkeypatch.setenv(metrics.TEXTFILE_DIR_ENV, str(directory))
    text = metrics.render_latest().decode()
    assert f'ratchet_drift_flagged{{kind="output",signature="{SIG}"}} 1.0' in text
    assert text.count("# TYPE ratchet_drift_output_psi gauge") == 1
    assert text.count("# TYPE ratchet_routing_version gauge") == 1 and "ratchet_routing_version 99" not in text
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed")
    done = subprocess.run([promtool, "check", "metrics"], input=(directory / TEXTFILE_NAME).read_bytes(),
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_ratchet_serve_points_metrics_at_the_homes_textfiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ratchet.cli.serve_cmds import _expose_textfiles

    monkeypatch.delenv(metrics.TEXTFILE_DIR_ENV, raising=False)
    _expose_textfiles(tmp_path / "home")
    assert metrics.textfile_dir() == tmp_path / "home" / "metrics"
    monkeypatch.setenv(metrics.TEXTFILE_DIR_ENV, "/srv/metrics")  # the operator's choice is kept
    _expose_textfiles(tmp_path / "home")
    assert metrics.textfile_dir() == Path("/srv/metrics")
