"""``ratchet annotate next|submit|export|stats`` against a real state database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ratchet.annotate import create_tasks
from ratchet.audit import read_entries
from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.programs.loading import load_programs
from ratchet.store.db import StateDB

SIG = "classify_intent"
WEEK = "2026-W48"
cli = CliRunner()


def run(*args: str) -> object:
    return cli.invoke(app, ["annotate", *args])


@pytest.fixture
def queue(state_db_url: str, monkeypatch: pytest.MonkeyPatch) -> StateDB:
    monkeypatch.setenv("RATCHET_DATABASE_URL", state_db_url)
    settings = Settings()
    store = DatasetStore(settings.home_dir, settings.data, registry=load_programs(settings))
    labelled = [("my card has not arrived yet", "card_arrival"), ("what exchange rate do you use", "exchange_rate"),
                ("where is my new card", "card_arrival"), ("my pin is blocked", "pin_blocked")]
    store.create(SIG, [ExampleRecord(values={"text": text, "intent": intent}, signature=SIG, source="test")
                       for text, intent in labelled], source="test")
    with StateDB(state_db_url) as db:
        create_tasks(db, SIG, [
            {"request_id": "r1", "inputs": {"text": "still waiting for my card to arrive"},
             "output": {"intent": "lost_or_stolen_card"}, "cluster": "c7", "cluster_label": "card waiting",
             "priority": 5.0},
            {"request_id": "r2", "inputs": {"text": "how old must I be"}, "output": {"intent": "age_limit"},
             "priority": 1.0},
        ], week=WEEK, double_share=0.0)
        yield db


def test_next_submit_export_stats_happy_path(queue: StateDB, tmp_path: Path) -> None:
    shown = run("next", "--annotator", "alice", "--json")
    assert shown.exit_code == 0, shown.output
    body = json.loads(shown.stdout)
    task = body["task"]
    assert task["request_id"] == "r1" and task["cluster_id"] == "c7" and task["lease_holder"] == "alice"
    assert task["output"] == {"intent": "lost_or_stolen_card"} and task["lease_expires_at"] is not None
    assert "card_arrival" in body["allowed_labels"]["intent"] and len(body["allowed_labels"]["intent"]) == 10
    assert body["nearest"][0]["outputs"] == {"intent": "card_arrival"}  # "…my card … arrive…" is nearest

    human = run("next", "--annotator", "alice")  # the same task again, for people
    assert human.exit_code == 0 and task["task_id"] in human.stdout and "card_arrival" in human.stdout
    assert "nearest labelled examples" in human.stdout and "card waiting" in human.stdout

    done = run("submit", task["task_id"], "--set", "intent=card_arrival", "--annotator", "alice", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["annotation"]["kind"] == "correct"
    assert json.loads(done.stdout)["task_status"] == "done"
    second = json.loads(run("next", "--annotator", "bob", "--json").stdout)["task"]
    assert run("submit", second["task_id"], "--accept", "--annotator", "bob").exit_code == 0
    assert json.loads(run("next", "--annotator", "bob", "--json").stdout) == {"task": None}

    out = tmp_path / "golden_dataset"
    exported = run("export", "--output-dir", str(out), "--json")
    assert exported.exit_code == 0, exported.output
    assert json.loads(exported.stdout)["exported"] == {SIG: 2}
    lines = [json.loads(line) for line in (out / f"{SIG}.jsonl").read_text().splitlines()]
    assert {(line["text"], line["intent"]) for line in lines} == {
        ("still waiting for my card to arrive", "card_arrival"), ("how old must I be", "age_limit")}

    stats = json.loads(run("stats", "--json").stdout)
    assert stats["backlog"][0]["done"] == 2 and stats["annotators"] == {"alice": {"correct": 1}, "bob": {"accept": 1}}
    table = run("stats")
    assert table.exit_code == 0 and "backlog" in table.stdout and "alice" in table.stdout

    entries = [e for e in read_entries(Path(".ratchet"), action="annotation.submit")]
    assert [(e["actor"], e["outcome"], e["details"]["kind"]) for e in entries] == [
        ("alice", "ok", "correct"), ("bob", "ok", "accept")]


def test_submit_errors_are_one_line_and_audited(queue: StateDB) -> None:
    task = json.loads(run("next", "--annotator", "alice", "--json").stdout)["task"]
    bad_label = run("submit", task["task_id"], "--set", "intent=refund", "--annotator", "alice")
    assert bad_label.exit_code == 2 and "output field 'intent'" in bad_label.stderr
    unknown = run("submit", task["task_id"], "--set", "label=card_arrival", "--annotator", "alice")
    assert unknown.exit_code == 2 and "unknown output field 'label'" in unknown.stderr
    no_reason = run("submit", task["task_id"], "--reject", "--annotator", "alice")
    assert no_reason.exit_code == 2 and "needs a reason" in no_reason.stderr
    not_holder = run("submit", task["task_id"], "--accept", "--annotator", "bob")
    assert not_holder.exit_code == 2 and "bob does not hold the lease" in not_holder.stderr
    missing = run("submit", "nope", "--accept", "--annotator", "alice")
    assert missing.exit_code == 2 and "no annotation task 'nope'" in missing.stderr
    unknown_sig = run("next", "--signature", "no_such_program", "--annotator", "alice")
    assert unknown_sig.exit_code == 2
    rejected = run("submit", task["task_id"], "--reject", "--reason", "not English", "--annotator", "alice")
    assert rejected.exit_code == 0, rejected.output
    outcomes = [e["outcome"] for e in read_entries(Path(".ratchet"), action="annotation.submit")]
    assert outcomes == ["refused"] * 5 + ["ok"]
