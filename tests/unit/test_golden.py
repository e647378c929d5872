"""Golden datasets: versions and provenance, validation, the leakage rule, stats, coverage and the CLI."""

import json
import time
from pathlib import Path

import dspy
import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.golden import (
    GoldenExample,
    GoldenStore,
    add_golden,
    golden_coverage,
    golden_input_hashes,
    golden_stats,
    load_golden,
    without_golden,
)
from ratchet.data.records import ExampleRecord, input_hash, read_batch, write_batch
from ratchet.errors import DataError
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.loop.phases import phase_version
from ratchet.optimize.run import run_optimization
from ratchet.programs import load_programs

SIG = "classify_intent"
BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"
runner = CliRunner()


def banking(start: int = 0, stop: int | None = None) -> list[dict]:
    return [json.loads(line) for line in BANKING.read_text().splitlines()[start:stop]]


@pytest.fixture
def env(tmp_path: Path):
    settings = Settings(home=tmp_path / "home")
    return settings, load_programs(settings)


def golden(row: dict, n: int, **values) -> GoldenExample:
    return GoldenExample(values={**row, **values}, task_id=f"task-{n}", annotator="ana", request_id=f"req-{n}")


# --- versions, provenance, validation --------------------------------------------------------------

def test_golden_versions_commit_and_load_with_provenance(env) -> None:
    settings, registry = env
    assert load_golden(settings, SIG, registry=registry) == []  # none yet: empty, not an error
    rows = banking(0, 3)
    first = add_golden(settings, SIG, [golden(r, i) for i, r in enumerate(rows)], source="annotation",
                       note="week 48", registry=registry)
    sig_dir = settings.home_dir / "golden" / SIG
    assert (sig_dir / first / "dataset.json").is_file() and (sig_dir / "latest").resolve().name == first
    assert not (settings.home_dir / "training_data").exists()  # a root of its own: training never sees it
    loaded = load_golden(settings, SIG, registry=registry)
    assert [e.values["text"] for e in loaded] == [r["text"] for r in rows]
    by_task = {e.task_id: e for e in loaded}
    assert by_task["task-1"].annotator == "ana" and by_task["task-1"].request_id == "req-1"
    assert by_task["task-1"].source == "annotation" and by_task["task-1"].id

    relabel = "exchange_rate" if rows[0]["intent"] != "exchange_rate" else "card_arrival"
    newer = [golden(rows[0], 9, intent=relabel), golden(banking(3, 4)[0], 10)]
    second = add_golden(settings, SIG, newer, source="annotation", registry=registry)
    store = GoldenStore(settings.home_dir, settings.data, registry=registry)
    infos = store.list_versions(SIG)
    assert [i.version for i in infos] == [first, second] and infos[1].metadata["parent"] == first
    assert infos[1].metadata["operation"]["replaced"] == 1 and infos[1].metadata["operation"]["added"] == 1
    latest = {e.values["text"]: e for e in load_golden(settings, SIG, registry=registry)}
    assert len(latest) == 4
    assert latest[rows[0]["text"]].values["intent"] == relabel and latest[rows[0]["text"]].task_id == "task-9"
    assert len(store.examples(SIG, first)) == 3  # the older version is unchanged


def test_validation_errors_name_the_field_and_store_nothing(env) -> None:
    settings, registry = env
    row = banking(0, 1)[0]
    with pytest.raises(DataError, match="intent") as bad_label:
        add_golden(settings, SIG, [golden(row, 1), golden(row, 2, intent="not_an_intent")], source="file",
                   registry=registry)
    assert "#2" in str(bad_label.value) and "nothing stored" in str(bad_label.value)
    with pytest.raises(DataError, match="unknown field 'txt'"):
        add_golden(settings, SIG, [{"txt": "hello", "intent": "card_arrival"}], source="file", registry=registry)
    with pytest.raises(DataError, match="missing output field 'intent'"):
        add_golden(settings, SIG, [{"text": "where is my card"}], source="file", registry=registry)
    with pytest.raises(DataError, match="no golden examples"):
        add_golden(settings, SIG, [], source="file", registry=registry)
    assert load_golden(settings, SIG, registry=registry) == []
    with pytest.raises(DataError, match="only grows"):
        GoldenStore(settings.home_dir, settings.data, registry=registry).create(SIG, [], source="file")


# --- the leakage rule ---------------------------------------------------------------------------------

def test_without_golden_matches_by_input_hash(env) -> None:
    _, registry = env
    schema = registry.get(SIG).schema
    a, b = banking(0, 2)
    records = [ExampleRecord(values=a, signature=SIG, source="x"), ExampleRecord(values=b, signature=SIG, source="x")]
    kept, excluded = without_golden(records, {input_hash({"text": a["text"]})}, schema)
    assert excluded == 1 and [r.values["text"] for r in kept] == [b["text"]]
    assert without_golden(records, set(), schema) == (records, 0)


def test_golden_inputs_never_reach_optimization(env) -> None:
    settings, registry = env
    rows = banking(0, 150)
    DatasetStore(settings.home_dir, settings.data, registry=registry).create(
        SIG, [ExampleRecord(values=r, signature=SIG, source="telemetry") for r in rows], source="telemetry")
    held = rows[::15]  # 10 collected inputs that are also golden (one with another label)
    add_golden(settings, SIG, [golden(r, i) for i, r in enumerate(held)], source="annotation", registry=registry)
    golden_texts = {r["text"] for r in held}
    prompts: list[str] = []

    def respond(prompt: str) -> str:
        prompts.append(prompt)
        return " card_arrival"

    engine = ScriptedEngine(respond)
    lm = dspy.LM("scripted/golden", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 num_retries=0)
    bundle = LMBundle.for_lm(lm, CompletionAdapter())
    result = run_optimization(settings, registry, SIG, optimizer="labeled", lms=bundle, save_candidate=False)
    assert result.excluded_golden == len(held) == 10
    assert sum(result.sizes.values()) == 140
    assert result.to_dict()["excluded_golden"] == 10
    demos = "\n".join(p.rsplit("Text:", 1)[0] for p in prompts)  # what a prompt shows before its question
    questions = [p.rsplit("Text:", 1)[-1].split("\n", 1)[0].strip() for p in prompts]
    assert not [t for t in golden_texts if t in demos]  # never a demo
    golden_questions = [q for q in questions if q in golden_texts]
    assert len(golden_questions) == 2 * len(held)  # asked only when baseline and candidate are scored on golden
    assert result.golden is not None and result.golden["n"] == len(held)  # (reported, not trained on)
    others = [r["text"] for r in rows if r["text"] not in golden_texts]
    assert sum(t in demos or t in questions for t in others) > 0  # a different input is untouched


def test_the_cycle_never_stores_golden_inputs_as_training_data(env, tmp_path: Path) -> None:
    settings, registry = env
    rows = banking(0, 40)
    add_golden(settings, SIG, [golden(r, i) for i, r in enumerate(rows[:5])], source="annotation",
               registry=registry)
    run_dir = tmp_path / "run"
    write_batch(run_dir / "validated_data" / f"{SIG}.gated.jsonl",
                [ExampleRecord(values=r, signature=SIG, source="telemetry") for r in rows])
    summary = phase_version({"settings": settings.model_dump(), "signature": SIG, "run_dir": str(run_dir),
                             "run_id": "r1"}, lambda *a: None)
    assert summary["excluded_golden"] == 5 and summary["added"] == 35
    stored = DatasetStore(settings.home_dir, settings.data, registry=registry).load(SIG).records
    hashes = golden_input_hashes(settings, SIG, registry=registry)
    assert len(hashes) == 5 and not [r for r in stored if input_hash({"text": r.values["text"]}) in hashes]
    assert len(read_batch(run_dir / "validated_data" / f"{SIG}.gated.jsonl")) == 40  # the run's batch is untouched


# --- stats and coverage --------------------------------------------------------------------------------

def call(text: str, intent: str, *, ok: bool = True, arm: str = "baseline", age_days: float = 0.0) -> dict:
    return {"record": "interaction", "module_name": SIG, "module_version": "base", "signature": SIG,
            "input": {"text": text}, "output": {"intent": intent} if ok else {}, "success": ok, "arm": arm,
            "timestamp_ms": int((time.time() - age_days * 86_400) * 1000), "request_id": f"r-{text}"}


@pytest.fixture
def traffic(env) -> tuple[Settings, object]:
    """Golden: card_arrival ×3, exchange_rate ×1. Traffic: pin_blocked ×6, card_arrival ×3, exchange_rate ×1,
    plus a failed call, a shadow answer and a call older than the window (none of them counted)."""
    settings, registry = env
    labelled = ([("card_arrival", f"where is my card {i}") for i in range(3)]
                + [("exchange_rate", "what rate do you use")])
    add_golden(settings, SIG, [GoldenExample(values={"text": t, "intent": i}, annotator="ana")
                               for i, t in labelled], source="annotation", registry=registry)
    lines = ([call(f"pin {i}", "pin_blocked") for i in range(6)] + [call(f"card {i}", "card_arrival") for i in range(3)]
             + [call("rate", "exchange_rate"), call("boom", "", ok=False), call("shadow", "age_limit", arm="shadow"),
                call("old", "age_limit", age_days=30),
                {"record": "feedback", "request_id": "r-rate", "signature": SIG, "score": 1.0, "timestamp_ms": 1}])
    directory = settings.home_dir / "telemetry"
    directory.mkdir(parents=True)
    (directory / "interactions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + "not json\n")
    return settings, registry


def test_stats_count_labels_versions_and_annotators(traffic) -> None:
    settings, registry = traffic
    stats = golden_stats(GoldenStore(settings.home_dir, settings.data, registry=registry), registry.get(SIG))
    assert stats["size"] == 4 and stats["versions"] == 1 and stats["annotators"] == {"ana": 4}
    labels = stats["labels"]["intent"]
    assert labels["card_arrival"] == 3 and labels["exchange_rate"] == 1 and labels["pin_blocked"] == 0
    assert list(labels)[:2] == ["card_arrival", "exchange_rate"] and len(labels) == 10  # every Literal choice


def test_coverage_ranks_under_represented_labels(traffic) -> None:
    settings, registry = traffic
    report = golden_coverage(GoldenStore(settings.home_dir, settings.data, registry=registry), registry.get(SIG),
                             settings.home_dir / "telemetry", since_days=7, min_size=10)
    assert report.traffic_calls == 10 and report.golden_size == 4
    assert report.scan.excluded == {"failed_call": 1, "shadow_arm": 1, "before_window": 1}
    assert report.scan.read.bad_lines == 1
    gaps = report.gaps
    assert [g.label for g in gaps] == ["pin_blocked"]  # card_arrival (30 % vs 75 %) and exchange_rate are covered
    top = gaps[0]
    assert (top.traffic, top.golden) == (6, 0) and top.traffic_share == pytest.approx(0.6)
    assert top.gap == pytest.approx(0.6) and top.shortfall == 6  # 60 % of a 10-example set
    rows = {c.label: c for c in report.labels}
    assert rows["card_arrival"].gap == pytest.approx(0.3 - 0.75)
    assert report.to_dict()["gaps"][0]["label"] == "pin_blocked"


# --- the CLI ----------------------------------------------------------------------------------------------

def test_cli_add_stats_coverage(tmp_path: Path) -> None:
    examples = tmp_path / "golden.jsonl"
    rows = banking(0, 4)
    meta = {"_meta": {"metadata": {"annotator": "bob", "task_id": "t1"}}}
    examples.write_text("".join(json.dumps({**r, **(meta if i == 0 else {})}) + "\n" for i, r in enumerate(rows)))
    added = runner.invoke(app, ["golden", "add", "--signature", SIG, "--file", str(examples), "--json"])
    assert added.exit_code == 0, added.output
    summary = json.loads(added.stdout)
    assert summary["added"] == 4 and summary["example_count"] == 4 and summary["replaced"] == 0
    again = runner.invoke(app, ["golden", "add", "-s", SIG, "-f", str(examples)])
    assert again.exit_code == 0 and "4 relabelled" in again.stdout

    stats = runner.invoke(app, ["golden", "stats", "--signature", SIG, "--json"])
    assert stats.exit_code == 0, stats.output
    report = json.loads(stats.stdout)["golden"][0]
    assert report["size"] == 4 and report["versions"] == 2 and report["annotators"] == {"bob": 1}
    human = runner.invoke(app, ["golden", "stats", "-s", SIG])
    assert human.exit_code == 0 and "4 golden examples" in human.stdout

    telemetry = Path(".ratchet") / "telemetry"
    telemetry.mkdir(parents=True)
    (telemetry / "interactions.jsonl").write_text(
        "".join(json.dumps(call(f"t{i}", "pin_blocked" if i % 2 else "age_limit")) + "\n" for i in range(8)))
    cov = runner.invoke(app, ["golden", "coverage", "-s", SIG, "--json"])
    assert cov.exit_code == 0, cov.output
    gaps = json.loads(cov.stdout)["coverage"][0]["gaps"]
    assert {g["label"] for g in gaps} >= {"pin_blocked", "age_limit"}
    table = runner.invoke(app, ["golden", "coverage", "-s", SIG])
    assert table.exit_code == 0 and "under-represented" in table.stdout and "█" in table.stdout


def test_cli_add_refuses_an_invalid_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"text": "hi", "intent": "card_arrival"}) + "\n"
                   + json.dumps({"text": "hi again", "intent": "nope"}) + "\n")
    result = runner.invoke(app, ["golden", "add", "-s", SIG, "-f", str(bad)])
    assert result.exit_code == 2
    assert "intent" in result.output and "nothing stored" in result.output
    empty = runner.invoke(app, ["golden", "stats", "-s", SIG, "--json"])
    assert json.loads(empty.stdout)["golden"][0]["size"] == 0


# --- a home's other duties: backup and the right to deletion cover golden sets -------------------------

def test_backup_holds_the_golden_sets_and_deletion_purges_them(env, tmp_path: Path) -> None:
    from ratchet.ops.backup import create_backup
    from ratchet.ops.restore import verify_backup
    from ratchet.privacy.files import purge_datasets

    settings, registry = env
    rows = banking(0, 3)
    add_golden(settings, SIG, [golden(r, i) for i, r in enumerate(rows)], source="annotation", registry=registry)
    archive = tmp_path / "backup.tar.gz"
    create_backup(settings, archive)
    names = {m["path"] for m in verify_backup(archive, allow_unsigned=True)["members"]}
    assert f"golden/{SIG}/latest" in names

    results = purge_datasets(settings.home_dir, lambda item: item["_meta"]["metadata"].get("request_id") == "req-1",
                             edit={"deletion_id": "d1"})
    [purged] = [r for r in results if r.store == "golden"]
    assert len(purged.example_ids) == 1 and purged.to_dict()["store"] == "golden" and purged.new_version
    left = load_golden(settings, SIG, registry=registry)
    assert sorted(e.request_id for e in left) == ["req-0", "req-2"]
