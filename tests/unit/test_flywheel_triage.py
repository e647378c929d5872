"""Failure triage (``ratchet flywheel run``): real telemetry files, a real SQLite state database, the real CLI."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.errors import ConfigError, DataError
from ratchet.flywheel import (
    TriageOptions,
    cluster_texts,
    collect_failures,
    last_week,
    parse_week,
    run_triage,
    task_items,
)
from ratchet.store.canaries import CanaryRun, record_canary_runs
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.tables import request_index

SIG = "classify_intent"
W47, W48 = parse_week("2026-W47"), parse_week("2026-W48")

CARD = ["my card has not arrived yet", "my card still has not arrived", "the card I ordered has not arrived",
        "card not arrived after two weeks"]
CHARGE = ["I was charged twice for one payment", "charged twice for the same payment",
          "a payment was charged twice on my account", "why was my payment charged twice"]
PIN = ["how do I change my PIN", "I want to change my PIN number", "change PIN at an ATM"]


def _ms(week: Any, day: int = 2, hour: int = 12) -> int:
    start = week.start
    return int(datetime(start.year, start.month, start.day, hour, tzinfo=UTC).timestamp() * 1000) + day * 86_400_000


def _call(rid: str, text: str, at: int, *, ok: bool = True, error_type: str | None = None,
          signature: str = SIG) -> dict[str, Any]:
    return {"record": "interaction", "module_name": "m", "module_version": "v1", "signature": signature,
            "input": {"text": text}, "output": {"label": "card_arrival"} if ok else {}, "timestamp_ms": at,
            "success": ok, "request_id": rid, "error_type": None if ok else error_type,
            "error": None if ok else f"{error_type} happened"}


def _feedback(rid: str, score: float, at: int, correction: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"record": "feedback", "request_id": rid, "signature": SIG, "score": score, "timestamp_ms": at,
            "correction": correction}


def _write(home: Path, records: list[dict[str, Any] | str], name: str = "interactions.jsonl") -> None:
    directory = home / "telemetry"
    directory.mkdir(parents=True, exist_ok=True)
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    with (directory / name).open("a", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")


def _failing(texts: list[str], week: Any, prefix: str, error_type: str = "parse_error") -> list[dict[str, Any]]:
    return [_call(f"{prefix}{i}", t, _ms(week) + i, ok=False, error_type=error_type) for i, t in enumerate(texts)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[StateDB]:
    state = StateDB(f"sqlite:///{tmp_path / 'state.db'}")
    yield state
    state.dispose()


def test_week_without_failures_writes_a_clear_empty_report(tmp_path: Path) -> None:
    _write(tmp_path / ".ratchet", [_call("ok1", "fine", _ms(W48)), _feedback("ok1", 1.0, _ms(W48) + 5)])
    result = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48"])
    assert result.exit_code == 0, result.output
    assert "no failures this week" in result.stdout
    md = (tmp_path / ".ratchet/reports/triage_2026-W48.md").read_text()
    assert "No failures this week" in md
    report = json.loads((tmp_path / ".ratchet/reports/triage_2026-W48.json").read_text())
    assert report["signatures"] == {} and report["queue"] == [] and report["totals"]["failures"] == 0
    assert report["scan"]["interactions_in_week"] == 1
    as_json = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48", "--json"])
    assert as_json.exit_code == 0 and json.loads(as_json.stdout)["totals"]["clusters"] == 0
    _write(tmp_path / ".ratchet", _failing(CARD, W48, "a"))  # last week failed, this week did not
    assert CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48"]).exit_code == 0
    quiet = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W49"])
    assert quiet.exit_code == 0 and "no failures this week" in quiet.stdout
    assert "| parse_error | 0 | 0 % | 4 | 100 % |" in (tmp_path / ".ratchet/reports/triage_2026-W49.md").read_text()


def test_clustering_groups_near_duplicates_and_separates_different_texts() -> None:
    texts = [*CARD, *CHARGE, *PIN]
    clustering = cluster_texts(texts)
    labels = clustering.labels
    assert len({labels[i] for i in range(4)}) == 1
    assert len({labels[i] for i in range(4, 8)}) == 1
    assert len({labels[i] for i in range(8, 11)}) == 1
    assert len({labels[0], labels[4], labels[8]}) == 3
    card = clustering.clusters[labels[0]]
    assert {"card", "arrived"} <= set(card.terms)
    assert cluster_texts([]).clusters == []
    assert cluster_texts(["only one"]).labels == [0]
    assert len(cluster_texts(["", "  ", "?!"]).clusters) == 1  # no words at all: one cluster, no error
    sampled = cluster_texts(texts * 3, max_items=12)  # above max_items the rest join the nearest cluster
    assert sampled.labels == [sampled.labels[i % len(texts)] for i in range(len(texts) * 3)]
    assert len(sampled.clusters) == 3


def test_representatives_are_distinct_texts_closest_to_the_centroid() -> None:
    texts = ["card not arrived"] * 5 + ["my card has not arrived", "card has still not arrived yet"]
    (cluster,) = cluster_texts(texts).clusters
    first = [texts[i] for i in cluster.members[:3]]
    assert len(set(first)) == 3 and first[0] == "card not arrived"


def test_new_and_recurring_clusters_against_last_week(tmp_path: Path) -> None:
    _write(tmp_path, [*_failing(CARD, W47, "a"), *_failing(PIN, W47, "p")])
    _write(tmp_path, [*_failing(CARD[::-1], W48, "b"), *_failing(CHARGE, W48, "c")])
    assert run_triage(tmp_path, None, W47)[0]["totals"]["new_clusters"] == 2
    report, md_path, json_path = run_triage(tmp_path, None, W48)
    clusters = {c["members"][0]["request_id"][0]: c for c in report["signatures"][SIG]["clusters"]}
    assert all(len({m["request_id"][0] for m in c["members"]}) == 1 for c in clusters.values())
    assert clusters["b"]["status"] == "recurring" and clusters["b"]["matches"].startswith(f"{SIG}/2026-W47/")
    assert clusters["c"]["status"] == "new" and clusters["c"]["matches"] is None
    assert clusters["c"]["priority"] == 2 * clusters["c"]["size"] > clusters["b"]["priority"]
    assert report["queue"][0]["cluster"] == clusters["c"]["id"]
    assert [m["request_id"] for m in clusters["c"]["members"]][:3] == clusters["c"]["representatives"]
    assert "recurring (like classify_intent/2026-W47/" in md_path.read_text()
    for path in (md_path, json_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_failure_types_are_compared_with_last_week(tmp_path: Path) -> None:
    _write(tmp_path, [*_failing(CARD, W47, "a", "parse_error"), *_failing(PIN[:1], W47, "t", "timeout")])
    week48 = [*_failing(CHARGE[:2], W48, "b", "parse_error"),
              *[_call(f"ok{i}", t, _ms(W48) + i) for i, t in enumerate(PIN)],
              _feedback("ok0", 0.2, _ms(W48) + 100), _feedback("ok1", 0.9, _ms(W48) + 100),
              _feedback("ok2", 1.0, _ms(W48) + 100, {"label": "change_pin"})]
    _write(tmp_path, week48)
    run_triage(tmp_path, None, W47)
    sig = run_triage(tmp_path, None, W48)[0]["signatures"][SIG]
    change = sig["failure_type_change"]
    assert change["parse_error"] == {"this_week": 2, "last_week": 4, "share": 0.5, "last_share": 0.8}
    assert change["timeout"]["this_week"] == 0 and change["timeout"]["last_week"] == 1
    assert change["low_score"]["this_week"] == 1 and change["correction"]["this_week"] == 1
    assert sig["previous_failures"] == 5 and sig["failures"] == 4


def test_malformed_telemetry_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    bad_record = {"record": "interaction", "signature": SIG, "success": "no"}
    _write(tmp_path / ".ratchet", ["{not json", "[1, 2]", json.dumps(bad_record), *map(json.dumps, _failing(CARD,
                                                                                                            W48, "a"))])
    result = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["scan"]["malformed_lines"] == 2 and report["scan"]["invalid_records"] == 1
    assert report["totals"]["failures"] == 4
    human = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48"])
    assert "skipped 2 malformed lines and 1 invalid records" in human.stdout


def test_iso_week_parsing_errors_are_clear() -> None:
    assert str(parse_week(" 2026-W01 ")) == "2026-W01"
    assert parse_week("2026-W01").previous() == parse_week("2025-W52")
    assert parse_week("2021-W01").start.date().isoformat() == "2021-01-04"
    monday = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # the weekly job's time, first day of 2026-W49
    assert str(parse_week("last", now=monday)) == str(last_week(monday)) == "2026-W48"
    sunday = monday.replace(hour=0) - timedelta(minutes=1)
    assert str(parse_week("LAST", now=sunday)) == "2026-W47"  # Sunday 23:59: W48 is not over yet
    assert str(last_week(datetime(2027, 1, 4, tzinfo=UTC))) == "2026-W53"
    with pytest.raises(ConfigError, match="not an ISO week: write YYYY-Www"):
        parse_week("2026-48")
    with pytest.raises(ConfigError, match="2025 has weeks 01 to 52"):
        parse_week("2025-W53")
    result = CliRunner().invoke(app, ["flywheel", "run", "--week", "W48"])
    assert result.exit_code == 2 and "not an ISO week" in result.stderr
    typo = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48", "--signature", "clasify_intent"])
    assert typo.exit_code == 2 and "unknown signature 'clasify_intent'; registered: " in typo.stderr
    assert CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48", "-s", SIG]).exit_code == 0


def test_feedback_from_the_state_database_and_low_canary_runs(tmp_path: Path, db: StateDB) -> None:
    at = _ms(W48) / 1000
    _write(tmp_path, [_call("r1", CARD[0], _ms(W48)), _call("r2", CARD[1], _ms(W48)),
                      _call("r3", CHARGE[0], _ms(W48), ok=False, error_type="lm_error")])
    with db.begin(write=True) as conn:
        conn.execute(request_index.insert(), [{"request_id": r, "signature": SIG, "version": "v1",
                                               "arm": "baseline", "created_at": at} for r in ("r1", "r2", "r3", "r9")])
    record_feedback(db, "r1", 0.1, at=at + 10)
    record_feedback(db, "r2", 0.9, at=at + 10)  # not a failure
    record_feedback(db, "r3", 0.0, {"label": "x"}, at=at + 10)  # the failed call outranks the correction
    record_feedback(db, "r9", 0.0, at=at + 10)  # not sampled by telemetry: counted, not clustered
    record_canary_runs(db, [CanaryRun(SIG, "v1", at + 60, "ps", 20, 0.3, errors=2, parse_failures=4),
                            CanaryRun(SIG, "v1", at + 90, "ps", 20, 0.9)])
    found = collect_failures(tmp_path / "telemetry", db, W48)
    types = {f.request_id: f.failure_type for f in found.failures[SIG]}
    assert types == {"r1": "low_score", "r3": "lm_error", "r9": "low_score"}
    assert [c.score for c in found.low_canaries[SIG]] == [0.3]
    report = run_triage(tmp_path, db, W48)[0]
    sig = report["signatures"][SIG]
    assert [f["request_id"] for f in sig["without_inputs"]] == ["r9"] and sig["clustered"] == 2
    assert report["totals"]["low_canary_runs"] == 1
    stricter = collect_failures(tmp_path / "telemetry", db, W48, score_threshold=0.95)
    assert {f.request_id for f in stricter.failures[SIG]} == {"r1", "r2", "r3", "r9"}


def test_one_signature_rerun_keeps_the_others_and_a_bad_previous_report_is_clear(tmp_path: Path) -> None:
    _write(tmp_path, [*_failing(CARD, W48, "a"),
                      *[_call(f"x{i}", t, _ms(W48), ok=False, error_type="timeout", signature="extract")
                        for i, t in enumerate(PIN)]])
    assert set(run_triage(tmp_path, None, W48)[0]["signatures"]) == {SIG, "extract"}
    again = run_triage(tmp_path, None, W48, TriageOptions(signature="extract"))[0]
    assert set(again["signatures"]) == {SIG, "extract"} and again["totals"]["failures"] == 7
    (tmp_path / "reports/triage_2026-W49.json").write_text("{torn")
    with pytest.raises(DataError, match="unreadable"):
        run_triage(tmp_path, None, parse_week("2026-W50"))


def test_feedback_may_score_calls_of_the_lookback_window_only(tmp_path: Path) -> None:
    week46 = parse_week("2026-W46")
    _write(tmp_path, [_call("old", CARD[0], _ms(week46, day=0)), _call("recent", CARD[1], _ms(W47, day=5)),
                      _feedback("old", 0.0, _ms(W48)), _feedback("recent", 0.0, _ms(W48))])
    _write(tmp_path, [_call("stale", CARD[2], _ms(week46, day=0))], name="interactions-20261109T000000-1-0.jsonl")
    rotated = tmp_path / "telemetry/interactions-20261109T000000-1-0.jsonl"
    os.utime(rotated, (W47.start.timestamp() - 86_400 * 8,) * 2)  # last written before the window: not opened
    found = collect_failures(tmp_path / "telemetry", None, W48, lookback_days=7)
    inputs = {f.request_id: f.inputs for f in found.failures[SIG]}
    assert inputs == {"old": None, "recent": {"text": CARD[1]}}
    assert found.scan.files == 1


def test_task_items_feed_the_annotation_queue_representatives_first(tmp_path: Path, db: StateDB) -> None:
    from ratchet.annotate import create_tasks, get_task

    _write(tmp_path, [*_failing(CARD, W48, "a"), *[_call(f"c{i}", t, _ms(W48)) for i, t in enumerate(CHARGE)],
                      *[_feedback(f"c{i}", 0.0, _ms(W48) + 9) for i in range(len(CHARGE))]])
    report = run_triage(tmp_path, db, W48)[0]
    items = task_items(report, SIG)
    assert len(items) == 8 and task_items(report, "other") == []
    assert [i["priority"] for i in items] == sorted((i["priority"] for i in items), reverse=True)
    first = report["signatures"][SIG]["clusters"][0]
    assert [i["request_id"] for i in items[:3]] == first["representatives"]
    created = create_tasks(db, SIG, items, week=str(W48), double_share=0.0)
    assert len(created.created) == 8
    failed_call = next(i for i in items if i["request_id"].startswith("a"))
    assert failed_call["output"] == {}
    task = get_task(db, created.created[0])
    assert task.cluster_id == first["id"] and task.request_id == first["representatives"][0]


def test_phase_one_queues_annotation_tasks_once_even_after_a_crash(tmp_path: Path) -> None:
    """`flywheel run` ends by queueing a task per clustered failure; re-running (after a crash between writing the
    report and queueing, or just twice) queues each failure once."""
    from ratchet.annotate import next_task, stats
    from ratchet.config import Settings

    home = tmp_path / ".ratchet"
    _write(home, [*_failing(CARD, W48, "a"), *_failing(PIN, W48, "p")])
    settings = Settings(home=home)
    state = StateDB.connect(settings)
    try:
        run_triage(home, state, W48)  # phase 1's report written, then the process died before queueing
        assert stats(state).backlog == []
        first = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48", "--json", "--double-share", "0"])
        assert first.exit_code == 0, first.output
        assert json.loads(first.stdout)["annotation_tasks"][SIG] == {"created": 7, "existing": 0, "double": 0}
        again = CliRunner().invoke(app, ["flywheel", "run", "--week", "2026-W48"])
        assert again.exit_code == 0 and "annotation tasks: 0 queued (7 already were)" in again.stdout
        assert [(b.signature, b.open) for b in stats(state).backlog] == [(SIG, 7)]
        task = next_task(state, annotator="ann")
        assert task is not None and task.signature == SIG and task.week == "2026-W48"
    finally:
        state.dispose()
