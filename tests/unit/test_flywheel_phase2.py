"""Phase 2 of the weekly flywheel (``ratchet flywheel run --week W --continue``): real telemetry, a real state
database (SQLite and PostgreSQL), the real dataset and golden stores, the real CLI."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from monitor_helpers import respond_intent
from sqlalchemy import select
from typer.testing import CliRunner

from ratchet.annotate import next_task, submit
from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.golden import GoldenStore
from ratchet.data.records import input_hash
from ratchet.flywheel import goes_to_golden, parse_week, run_triage
from ratchet.programs.loading import load_programs
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB
from ratchet.store.tables import annotation_imports

SIG = "classify_intent"
W47, W48 = parse_week("2026-W47"), parse_week("2026-W48")
TEXTS = {  # text → the gold intent; the model said card_arrival for all of them
    "my card has not arrived yet": "card_arrival", "my card still has not arrived": "card_arrival",
    "the card I ordered has not arrived": "card_arrival", "card not arrived after two weeks": "card_arrival",
    "how do I change my PIN": "pin_blocked", "I want to change my PIN number": "pin_blocked",
    "my PIN is blocked after three tries": "pin_blocked", "what exchange rate do you use": "exchange_rate",
    "the exchange rate you gave me was wrong": "exchange_rate", "how old do I have to be": "age_limit",
}
cli = CliRunner()


def _ms(week: Any, day: int = 2) -> int:
    start = week.start
    return int(datetime(start.year, start.month, start.day, 12, tzinfo=UTC).timestamp() * 1000) + day * 86_400_000


def _traffic(home: Path, week: Any, texts: dict[str, str], prefix: str = "r") -> None:
    """Served calls that all answered card_arrival, each with feedback from its gold label."""
    lines = []
    for i, (text, gold) in enumerate(texts.items()):
        rid, at = f"{prefix}{i}", _ms(week) + i * 1000
        lines.append({"record": "interaction", "module_name": "m", "module_version": "v1", "signature": SIG,
                      "input": {"text": text}, "output": {"intent": "card_arrival"}, "timestamp_ms": at,
                      "success": True, "request_id": rid, "error_type": None, "error": None})
        lines.append({"record": "feedback", "request_id": rid, "signature": SIG, "timestamp_ms": at + 10,
                      "score": 1.0 if gold == "card_arrival" else 0.0, "correction": None})
    directory = home / "telemetry"
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "interactions.jsonl").open("a", encoding="utf-8") as fh:
        fh.write("".join(json.dumps(line) + "\n" for line in lines))


def _annotate(db: StateDB, registry: ProgramRegistry, *, reject: str | None = None) -> dict[str, str]:
    """Work the whole queue as one annotator from the gold labels; returns text → what they answered."""
    answered = {}
    while (task := next_task(db, annotator="ann")) is not None:
        text = task.inputs["text"]
        gold = {**TEXTS, **EXTRA}[text]
        if text == reject:
            submit(db, registry, task.task_id, "ann", reject=True, reason="not a banking question")
            answered[text] = "reject"
        elif gold == task.output.get("intent"):
            submit(db, registry, task.task_id, "ann", accept=True)
            answered[text] = "accept"
        else:
            submit(db, registry, task.task_id, "ann", set_values={"intent": gold})
            answered[text] = "correct"
    return answered


EXTRA = {"when will my card get here": "card_arrival", "my card was stolen yesterday": "lost_or_stolen_card"}


@pytest.fixture
def env(state_db_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("RATCHET_DATABASE_URL", state_db_url)
    settings = Settings()
    registry = load_programs(settings)
    with StateDB(state_db_url) as db:
        yield settings, registry, db


def _phase(week: str, *extra: str) -> Any:
    return cli.invoke(app, ["flywheel", "run", "--week", week, "--double-share", "0", *extra])


def _golden(settings: Settings, registry: ProgramRegistry) -> dict[str, dict[str, Any]]:
    return {e.values["text"]: e.values | {"_meta": e.provenance() | e.extra}
            for e in GoldenStore(settings.home_dir, settings.data, registry=registry).examples(SIG)}


def _training(settings: Settings, registry: ProgramRegistry) -> dict[str, Any]:
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    return {r.values["text"]: r for r in store.load(SIG).records} if store.latest_version(SIG) else {}


def test_phase_two_sends_each_answer_to_golden_or_training_with_its_provenance(env: Any) -> None:
    settings, registry, db = env
    _traffic(settings.home_dir, W48, TEXTS)
    assert _phase("2026-W48").exit_code == 0
    answered = _annotate(db, registry, reject="how old do I have to be")
    failures = {t for t, gold in TEXTS.items() if gold != "card_arrival"}
    assert set(answered) == failures  # only the failures (score 0) were queued
    done = _phase("2026-W48", "--continue", "--json")
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    part = report["signatures"][SIG]["import"]
    assert (part["accepted"], part["corrected"], part["rejected"], part["conflicts"]) == (0, 5, 1, 0)

    golden, training = _golden(settings, registry), _training(settings, registry)
    labelled = {t for t, kind in answered.items() if kind != "reject"}
    assert set(golden) | set(training) == labelled and not set(golden) & set(training)  # one place each
    schema = registry.get(SIG).schema
    for text in labelled:
        assert (text in golden) == goes_to_golden(input_hash({"text": text}), 0.5)
    assert golden and training  # the seeded split puts cases on both sides here
    for text, row in golden.items():
        assert row["intent"] == TEXTS[text] and row["_meta"]["source"] == "annotation"
        assert row["_meta"]["task_id"] and row["_meta"]["request_id"].startswith("r")
        assert row["_meta"]["annotator"] == "ann" and row["_meta"]["week"] == "2026-W48"
    for text, record in training.items():
        assert record.outputs(schema) == {"intent": TEXTS[text]} and record.source == "annotation"
        assert record.metadata["kind"] == "correct" and record.metadata["annotators"] == ["ann"]
        assert record.metadata["cluster_id"].startswith(f"{SIG}/2026-W48/c")
    assert part["golden"] == {"added": len(golden), "relabelled": 0, "unchanged": 0, "before": 0,
                              "after": len(golden), "version": part["golden"]["version"]}
    assert part["training"]["added"] == len(training)

    md = (settings.home_dir / "reports" / "weekly_2026-W48.md").read_text()
    assert "# Weekly flywheel report 2026-W48" in md and "5 corrected, 1 rejected" in md
    assert f"golden set: 0 → {len(golden)} examples" in md
    on_disk = json.loads((settings.home_dir / "reports" / "weekly_2026-W48.json").read_text())
    assert on_disk["format"] == "ratchet.weekly/1" and on_disk["totals"]["imported_this_week"] == {
        "golden": len(golden), "rejected": 1, "training": len(training)}
    clusters = on_disk["signatures"][SIG]["clusters"]
    assert sum(c["annotation"].get("corrected", 0) for c in clusters) == 5


def test_a_rerun_imports_nothing_twice_and_makes_no_new_versions(env: Any) -> None:
    settings, registry, db = env
    _traffic(settings.home_dir, W48, TEXTS)
    _phase("2026-W48")
    _annotate(db, registry)
    assert _phase("2026-W48", "--continue").exit_code == 0
    golden_store = GoldenStore(settings.home_dir, settings.data, registry=registry)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    versions = (golden_store.latest_version(SIG), store.latest_version(SIG))
    again = _phase("2026-W48", "--continue", "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["totals"]["annotated"] == 0 and "import" not in report["signatures"][SIG]
    assert report["totals"]["imported_this_week"]["golden"] + report["totals"]["imported_this_week"][
        "training"] == 6  # the week's ledger still shows the first run
    assert (golden_store.latest_version(SIG), store.latest_version(SIG)) == versions
    human = _phase("2026-W48", "--continue")
    assert "no answered annotation tasks to import" in human.stdout


def test_a_crash_between_phase_one_and_phase_two_loses_nothing(env: Any) -> None:
    """Phase 1 died after writing its report, before queueing: phase 2 queues the tasks, imports nothing yet
    and says so; once they are answered, the next phase 2 imports them."""
    settings, registry, db = env
    _traffic(settings.home_dir, W48, TEXTS)
    run_triage(settings.home_dir, db, W48)  # the report is written, no task is queued
    assert next_task(db, annotator="ann") is None
    first = _phase("2026-W48", "--continue")
    assert first.exit_code == 0, first.output
    assert "no answered annotation tasks" in first.stdout and "6 task(s) still waiting" in first.stdout
    _annotate(db, registry)
    second = json.loads(_phase("2026-W48", "--continue", "--json").stdout)
    assert second["signatures"][SIG]["import"]["corrected"] == 6


def test_a_crash_in_the_middle_of_phase_two_neither_loses_nor_duplicates(env: Any,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The process dies after the training and golden writes, before the ledger: the re-run adds nothing to
    either store, makes no new version, and completes the ledger."""
    import ratchet.flywheel.imports as imports

    settings, registry, db = env
    _traffic(settings.home_dir, W48, TEXTS)
    _phase("2026-W48")
    _annotate(db, registry)

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise KeyboardInterrupt  # what a kill between two writes looks like to the code after it

    with monkeypatch.context() as patch:
        patch.setattr(imports, "_record", die)
        with pytest.raises(KeyboardInterrupt):
            imports.import_annotations(settings, registry, db, W48)
    golden, training = _golden(settings, registry), _training(settings, registry)
    versions = (GoldenStore(settings.home_dir, settings.data, registry=registry).latest_version(SIG),
                DatasetStore(settings.home_dir, settings.data, registry=registry).latest_version(SIG))
    with db.begin() as conn:
        assert conn.execute(select(annotation_imports)).all() == []
    again = json.loads(_phase("2026-W48", "--continue", "--json").stdout)["signatures"][SIG]["import"]
    assert again["golden"]["unchanged"] == len(golden) and again["golden"]["added"] == 0
    assert again["training"]["duplicates"] == len(training) and again["training"]["added"] == 0
    assert (_golden(settings, registry).keys(), _training(settings, registry).keys()) == (golden.keys(),
                                                                                        training.keys())
    assert (GoldenStore(settings.home_dir, settings.data, registry=registry).latest_version(SIG),
            DatasetStore(settings.home_dir, settings.data, registry=registry).latest_version(SIG)) == versions
    with db.begin() as conn:
        assert len(conn.execute(select(annotation_imports)).all()) == 6


def test_late_answers_to_last_weeks_tasks_are_imported_by_this_weeks_phase_two(env: Any) -> None:
    settings, registry, db = env
    _traffic(settings.home_dir, W47, EXTRA | {"my PIN is blocked after three tries": "pin_blocked"}, prefix="old")
    assert _phase("2026-W47").exit_code == 0
    _traffic(settings.home_dir, W48, {"what exchange rate do you use": "exchange_rate"})
    assert _phase("2026-W48").exit_code == 0
    _annotate(db, registry)  # last week's tasks answered this week, with this week's
    report = json.loads(_phase("2026-W48", "--continue", "--json").stdout)
    part = report["signatures"][SIG]["import"]
    assert part["corrected"] == 3 and part["from_earlier_weeks"] == 2
    with db.begin() as conn:
        weeks = {r.week for r in conn.execute(select(annotation_imports))}
    assert weeks == {"2026-W47", "2026-W48"}


def test_a_relabelled_golden_input_stays_golden_and_training_never_sees_it(env: Any) -> None:
    """An input already golden is relabelled there whatever the draw says (the leakage rule)."""
    from ratchet.data.golden import add_golden, golden_input_hashes

    settings, registry, db = env
    texts = [t for t, gold in TEXTS.items() if gold != "card_arrival"]
    add_golden(settings, SIG, [{"text": t, "intent": "age_limit"} for t in texts], source="file", registry=registry)
    _traffic(settings.home_dir, W48, TEXTS)
    _phase("2026-W48")
    _annotate(db, registry)
    part = json.loads(_phase("2026-W48", "--continue", "--json").stdout)["signatures"][SIG]["import"]
    assert part["golden"]["relabelled"] == 5 and part["golden"]["added"] == 0 and part["training"]["added"] == 0
    golden = _golden(settings, registry)
    assert {t: golden[t]["intent"] for t in texts} == {t: TEXTS[t] for t in texts}
    assert not golden_input_hashes(settings, SIG, registry=registry) & {
        input_hash({"text": t}) for t in _training(settings, registry)}


def test_phase_two_without_phase_one_and_a_bad_share_are_clear_errors(env: Any) -> None:
    missing = _phase("2026-W48", "--continue")
    assert missing.exit_code == 2
    assert "no triage report for 2026-W48" in missing.output and "ratchet flywheel run --week 2026-W48" in (
        missing.output)
    assert "Traceback" not in missing.output
    bad = _phase("2026-W48", "--continue", "--golden-share", "1.5")
    assert bad.exit_code == 2 and "golden-share" in bad.output


def test_both_phases_in_one_run_as_the_weekly_job_does(env: Any) -> None:
    settings, registry, db = env
    _traffic(settings.home_dir, W48, TEXTS)
    first = _phase("2026-W48", "--both", "--json")
    assert first.exit_code == 0, first.output
    body = json.loads(first.stdout)
    assert body["triage"]["annotation_tasks"][SIG]["created"] == 6 and body["weekly"]["totals"]["annotated"] == 0
    _annotate(db, registry)
    human = _phase("2026-W48", "--both")
    assert human.exit_code == 0, human.output
    assert "annotation tasks: 0 queued (6 already were)" in human.stdout
    assert "weekly flywheel 2026-W48, phase 2" in human.stdout
    assert "weekly_2026-W48.md" in human.stdout.replace("\n", "")
    refused = _phase("2026-W48", "--both", "--continue")
    assert refused.exit_code == 2 and "not both" in refused.output


def test_the_weekly_report_carries_the_golden_evaluation_run_after_the_import(env: Any, scripted_lm) -> None:
    """Phase 2 with an evaluation (what `--eval` runs): the grown golden set is scored and the weekly report says
    how each version did; without one, it says there is none yet."""
    from ratchet.flywheel import run_eval_regression, run_phase2
    from ratchet.lm.adapter import CompletionAdapter
    from ratchet.lm.setup import LMBundle

    settings, registry, db = env
    _traffic(settings.home_dir, W48, TEXTS)
    _phase("2026-W48")
    _annotate(db, registry)
    lm, _ = scripted_lm(respond_intent)
    lms = LMBundle.for_lm(lm, CompletionAdapter())
    without, md_path, _ = run_phase2(settings, registry, db, W48)
    assert without["evaluation"] == {SIG: None} and "no evaluation yet" in md_path.read_text()
    report, md_path, _ = run_phase2(settings, registry, db, W48,
                                    evaluate=lambda: run_eval_regression(settings, registry, db, SIG, lms=lms))
    result = report["evaluation"][SIG]
    golden = len(_golden(settings, registry))
    assert result["golden_size"] == golden and result["regression"] is False
    [production] = result["versions"]
    assert production["roles"] == ["production"] and production["n"] == golden and 0.0 <= production["score"] <= 1
    assert f"({golden} examples): no significant regression" in md_path.read_text()
