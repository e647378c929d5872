"""Issue 14, item 6: the annotation check — a stale backlog warns per signature, a fresh one or none does not —
and its textfile (backlog by state, oldest task age, feedback rate), on SQLite and PostgreSQL."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from sqlalchemy import update
from typer.testing import CliRunner

from ratchet.annotate import create_tasks, next_task, submit
from ratchet.cli.main import app
from ratchet.config import Settings, load_settings
from ratchet.monitor import AlertDispatcher
from ratchet.monitor.annotation_metrics import TEXTFILE_NAME, feedback_rates
from ratchet.monitor.checks import check_annotation, run_checks
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.tables import annotation_tasks, request_index

DAY = 86400.0
WEEK = "2026-W48"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "home", flywheel={"max_backlog_age_days": 7})


@pytest.fixture
def db(state_db_url: str) -> StateDB:
    with StateDB(state_db_url) as database:
        yield database


def queue(db: StateDB, signature: str, n: int) -> None:
    items = [{"request_id": f"{signature}-{i}", "inputs": {"text": f"case {i}"}, "output": {"label": "a"},
              "priority": float(i)} for i in range(n)]
    create_tasks(db, signature, items, week=WEEK, double_share=0.0)


def serve(db: StateDB, signature: str, n: int, *, at: float) -> list[str]:
    ids = [f"{signature}-req-{i}" for i in range(n)]
    with db.begin(write=True) as conn:
        conn.execute(request_index.insert(), [{"request_id": rid, "signature": signature, "version": "v1",
                                               "arm": "baseline", "created_at": at} for rid in ids])
    return ids


def samples(path: Path) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(path.read_text()) for s in family.samples}


def test_no_tasks_is_no_alert(settings: Settings, db: StateDB) -> None:
    result = check_annotation(settings, db=db)
    assert result.alerts == [] and result.scopes == ["annotation"]
    assert result.summary["backlog"] == [] and result.summary["stale"] == []


def test_a_fresh_backlog_is_fine_a_stale_one_warns_per_signature(settings: Settings, db: StateDB) -> None:
    queue(db, "classify_intent", 3)
    queue(db, "extract_fields", 2)
    assert check_annotation(settings, db=db, now=time.time() + 6.9 * DAY).alerts == []
    next_task(db, annotator="ann", signature="classify_intent", lease_s=30 * DAY)  # leased still counts as waiting
    result = check_annotation(settings, db=db, now=time.time() + 8 * DAY)
    assert sorted(a.details["signature"] for a in result.alerts) == ["classify_intent", "extract_fields"]
    alert = next(a for a in result.alerts if a.details["signature"] == "classify_intent")
    assert (alert.level, alert.title, alert.condition) == ("warning", "Annotation Backlog Stale",
                                                           "annotation/stale/classify_intent")
    assert (alert.details["waiting"], alert.details["open"], alert.details["leased"]) == (3, 2, 1)
    assert "classify_intent: 3 annotation task(s) waiting" in alert.message and "8.0 days" in alert.message
    assert "ratchet annotate next" in alert.details["hint"]
    strict = settings.model_copy(update={"flywheel": settings.flywheel.model_copy(
        update={"max_backlog_age_days": 1})})
    assert len(check_annotation(strict, db=db, now=time.time() + 2 * DAY).alerts) == 2


def test_the_check_runs_in_check_all_and_resolves_when_the_queue_is_worked(settings: Settings, db: StateDB) -> None:
    queue(db, "classify_intent", 1)
    dispatcher = AlertDispatcher.from_settings(settings)
    later = time.time() + 8 * DAY
    run = run_checks(settings, ["annotation"], dispatcher, db=db, now=later)
    assert run.exit_code == 1 and [d.alert.title for d in run.deliveries] == ["Annotation Backlog Stale"]
    task = next_task(db, annotator="ann", lease_s=60)
    assert task is not None
    submit(db, ProgramRegistry(), task.task_id, "ann", reject=True, reason="not a failure")
    healed = run_checks(settings, ["annotation"], dispatcher, db=db, now=later + 60)
    assert [(d.action, d.alert.title) for d in healed.deliveries] == [
        ("resolved", "Resolved: Annotation Backlog Stale")]


def test_textfile_gauges_backlog_age_and_feedback_rate(settings: Settings, db: StateDB) -> None:
    now = time.time()
    queue(db, "classify_intent", 3)
    next_task(db, annotator="ann", lease_s=3600)
    ids = serve(db, "classify_intent", 4, at=now - 3600)
    serve(db, "extract_fields", 2, at=now - 3600)
    serve(db, "old_sig", 5, at=now - 2 * DAY)  # outside the 24 h window
    record_feedback(db, ids[0], 1.0)
    record_feedback(db, ids[1], 0.0)
    rates = {r.signature: (r.requests, r.with_feedback, r.rate) for r in feedback_rates(db, now=now)}
    assert rates == {"classify_intent": (4, 2, 0.5), "extract_fields": (2, 0, 0.0)}
    assert not (settings.home_dir / "metrics").exists()
    check_annotation(settings, db=db, now=now + 100, export=False)  # evaluating only writes nothing
    assert not (settings.home_dir / "metrics").exists()
    check_annotation(settings, db=db, now=now + 100, export=True)
    got = samples(settings.home_dir / "metrics" / TEXTFILE_NAME)
    sig = (("signature", "classify_intent"),)
    assert got[("ratchet_annotation_backlog", (("signature", "classify_intent"), ("state", "open")))] == 2
    assert got[("ratchet_annotation_backlog", (("signature", "classify_intent"), ("state", "leased")))] == 1
    assert 99 <= got[("ratchet_annotation_backlog_oldest_seconds", sig)] < 200
    assert got[("ratchet_feedback_rate", sig)] == 0.5
    assert got[("ratchet_feedback_rate", (("signature", "extract_fields"),))] == 0.0
    assert got[("ratchet_annotation_last_check_timestamp_seconds", ())] == pytest.approx(now + 100)
    assert ("ratchet_feedback_rate", (("signature", "old_sig"),)) not in got


def test_check_annotation_command_and_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ratchet.toml"
    config.write_text('home = "home"\n\n[monitor]\nretry_backoff_s = 0\n\n[flywheel]\nmax_backlog_age_days = 3\n')
    settings = load_settings(config)
    assert settings.flywheel.max_backlog_age_days == 3
    monkeypatch.setenv("RATCHET_FLYWHEEL__MAX_BACKLOG_AGE_DAYS", "10")
    assert load_settings(config).flywheel.max_backlog_age_days == 10
    monkeypatch.delenv("RATCHET_FLYWHEEL__MAX_BACKLOG_AGE_DAYS")
    with pytest.raises(ValidationError):
        Settings(flywheel={"max_backlog_age_days": 0})
    db = StateDB.connect(settings)
    queue(db, "classify_intent", 2)
    cli = CliRunner()
    fresh = cli.invoke(app, ["--config", str(config), "monitor", "check-annotation", "--json"])
    assert fresh.exit_code == 0, fresh.output
    with db.begin(write=True) as conn:  # the tasks were queued four days ago
        conn.execute(update(annotation_tasks).values(created_at=time.time() - 4 * DAY))
    db.dispose()
    stale = cli.invoke(app, ["--config", str(config), "monitor", "check-annotation"])
    assert stale.exit_code == 1, stale.output
    assert "Annotation Backlog Stale" in stale.stdout and "classify_intent" in stale.stdout
    assert (settings.home_dir / "metrics" / TEXTFILE_NAME).exists()
