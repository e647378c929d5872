"""``ratchet collect telemetry``: real log files (plain, gzipped, malformed), the feedback join, filters, dedup."""

import gzip
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from ratchet.cli import collect_cmd
from ratchet.cli.main import RatchetGroup
from ratchet.config import Settings
from ratchet.data.collect import REPORT_NAME, TelemetryCollector, expand_log_paths, parse_since
from ratchet.data.records import input_hash, read_batch
from ratchet.errors import DataError, UnknownProgramError
from ratchet.programs import load_programs
from ratchet.telemetry.records import FeedbackRecord, InteractionLog

T0 = 1_764_000_000_000  # 2025-11-24T16:00:00Z
DAY = 86_400_000
MODEL = "llamacpp/gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec"


def call(rid: str | None, text: str, intent: str = "card_arrival", *, at: int = 0, signature: str = "classify_intent",
         **fields) -> dict:
    values = {"module_name": signature, "module_version": "v3", "signature": signature, "input": {"text": text},
              "output": {"intent": intent}, "timestamp_ms": T0 + at, "success": True, "latency_ms": 120.5,
              "cost_usd": 0.0004, "model": MODEL, "request_id": rid, "arm": "baseline", "tokens_in": 300,
              "tokens_out": 4, **fields}
    return InteractionLog(**values).to_dict()


def feedback(rid: str, score: float, correction: dict | None = None, *, at: int = 0,
             signature: str = "classify_intent") -> dict:
    return FeedbackRecord(request_id=rid, signature=signature, score=score, correction=correction,
                          timestamp_ms=T0 + at).to_dict()


def write(path: Path, items: list) -> Path:
    text = "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        with gzip.open(path, "wt") as fh:
            fh.write(text)
    else:
        path.write_text(text)
    return path


@pytest.fixture
def logs(tmp_path: Path) -> Path:
    """A telemetry directory: a rotated gzipped file, then the active one; feedback on both sides of its call."""
    directory = tmp_path / "home" / "telemetry"
    write(directory / "interactions-20251124T160000-42-0.jsonl.gz", [
        call("r1", "Where is my card?", at=1_000),
        feedback("r2", 0.0, {"intent": "lost_or_stolen_card"}, at=1_500),  # before its call, in another file
        call("r3", "When will my card arrive?", at=2_000),  # no feedback at all
        call("r4", "Is there an exchange rate fee?", "exchange_rate", at=3_000),
        feedback("r4", 0.5, at=3_100),  # low score
        call("r5", "My pin is blocked", "pin_blocked", at=4_000, success=False, output={}, error="timeout",
             error_type="LMTimeout"),
        call("r6", "I need help with the ATM", "atm_support", at=5_000, latency_ms=6_000.0),
        call("r7", "How old do I need to be?", "age_limit", at=6_000, cost_usd=0.5),
        call("r9", "I lost my card yesterday", "lost_or_stolen_card", at=50_000),  # newer duplicate, earlier file
        feedback("r9", 1.0, at=50_100),
        "this is not json",
        "[1, 2, 3]",
        json.dumps({"record": "interaction", "signature": "classify_intent", "success": "yes"}),
        json.dumps({"record": "metric", "value": 1}),
        json.dumps({"record": "feedback", "request_id": "r1", "signature": "classify_intent", "score": 2,
                    "timestamp_ms": T0}),  # score out of range
    ])
    write(directory / "interactions.jsonl", [
        feedback("r1", 0.9, at=1_100),
        call("r2", "Someone stole my card", "card_arrival", at=1_200),
        call("r8", "Where is my card?", at=7_000),  # duplicate of r1, newer
        feedback("r8", 1.0, at=7_100),
        call("r10", "I lost my card yesterday", "lost_or_stolen_card", at=8_000),  # the older copy of r9
        feedback("r10", 0.8, at=8_100),
        call("r11", "How do I cancel a transfer?", "cancel_transfer", at=9_000),
        feedback("r11", 0.1, {"intent": "no_such_intent"}, at=9_100),  # invalid correction
        call("r12", "typo in field", at=10_000, input={"txt": "hello"}),
        feedback("r12", 1.0, at=10_100),
        call("r13", "Can I use Apple Pay?", "apple_pay_or_google_pay", at=-40 * DAY),  # old: --since drops it
        feedback("r13", 1.0, at=-40 * DAY + 100),
        call("r14", "hello", "x", at=11_000, signature="mystery", output={"answer": "x"}),
        call("r15", "Table for 4 tomorrow at 7pm", at=12_000, signature="extract_booking",
             output={"people": "4", "date": "tomorrow", "time": "7pm", "first_name": None, "last_name": None}),
        feedback("r15", 1.0, at=12_100, signature="extract_booking"),
        call("r16", "Please close my account", "terminate_account", at=13_000),
        feedback("r16", 0.2, at=13_100),
        feedback("r16", 0.95, at=13_200),  # a later feedback replaces the earlier one
        feedback("nobody", 1.0, at=14_000),  # matches no call
        {"module_name": "x", "module_version": "v1", "signature": "classify_intent",  # seed-002 format, no record
         "input": {"text": "Change my address"}, "output": {"intent": "edit_personal_details"},
         "timestamp_ms": T0 + 15_000, "success": True},
        "",
        '{"record": "interaction", "truncated',
    ])
    return directory


@pytest.fixture(scope="module")
def registry():
    return load_programs(Settings())


def collect(files, registry, out: Path, **kwargs):
    return TelemetryCollector(list(files), registry, **kwargs).collect(out)


def test_joins_filters_labels_and_dedups(logs: Path, registry, tmp_path: Path) -> None:
    files = expand_log_paths([logs])
    assert [f.name for f in files] == ["interactions-20251124T160000-42-0.jsonl.gz", "interactions.jsonl"]
    report = collect(files, registry, tmp_path / "out")

    intents = read_batch(tmp_path / "out" / "classify_intent.jsonl")
    got = {e.values["text"]: e for e in intents}
    assert list(got) == ["Can I use Apple Pay?", "Where is my card?", "Someone stole my card",
                         "I lost my card yesterday", "Please close my account"]  # oldest first
    assert got["Where is my card?"].metadata["request_id"] == "r1"  # the oldest copy wins
    assert got["Where is my card?"].metadata["label_from"] == "output"
    stolen = got["Someone stole my card"]
    assert stolen.values["intent"] == "lost_or_stolen_card"  # the correction, not the output
    assert stolen.metadata["label_from"] == "correction" and stolen.metadata["feedback_score"] == 0.0
    assert got["I lost my card yesterday"].metadata["request_id"] == "r10"  # older, though read later
    assert got["Please close my account"].metadata["feedback_score"] == 0.95
    meta = got["Where is my card?"]
    assert meta.source == "telemetry" and meta.category == "card_arrival" and meta.signature == "classify_intent"
    assert meta.timestamp == datetime.fromtimestamp((T0 + 1_000) / 1000, UTC).isoformat(timespec="seconds")
    assert meta.metadata == {"request_id": "r1", "original_timestamp_ms": T0 + 1_000, "latency_ms": 120.5,
                             "cost_usd": 0.0004, "model": MODEL, "module_version": "v3", "arm": "baseline",
                             "feedback_score": 0.9, "label_from": "output"}
    assert meta.id and len({e.id for e in intents}) == len(intents)
    booking = read_batch(tmp_path / "out" / "extract_booking.jsonl")
    assert [b.values["people"] for b in booking] == ["4"] and booking[0].category == "date+people+time"

    assert dict(report.skipped) == {
        "no_feedback": 2, "low_score": 1, "failed_call": 1, "too_slow": 1, "too_expensive": 1, "duplicate": 2,
        "invalid_correction": 1, "invalid_input": 1, "unregistered_signature": 1,
    }
    assert report.written == {"classify_intent": 5, "extract_booking": 1}
    assert report.examined == report.collected + sum(report.skipped.values()) == 17
    counts = report.counts
    assert counts["malformed_lines"] == 3 and counts["invalid_records"] == 3
    assert counts["interactions"] == 17 and counts["feedback_records"] == 13
    assert counts["feedback_unmatched"] == 1 and counts["feedback_superseded"] == 1
    assert counts["label_from_output"] == 5 and counts["label_from_correction"] == 1
    assert counts["files"] == 2 and counts["lines"] == 37
    assert any("no_such_intent" in e for e in report.errors)
    assert any("'mystery' is in the logs" in e for e in report.errors)
    saved = json.loads((tmp_path / "out" / REPORT_NAME).read_text())
    assert saved["skipped"]["no_feedback"] == 2 and saved["counts"]["malformed_lines"] == 3
    assert saved["summary"].startswith("collected: 6 examples (17 calls examined; skipped:")


def test_signature_since_and_thresholds(logs: Path, registry, tmp_path: Path) -> None:
    files = expand_log_paths([str(logs / "interactions*")])
    report = collect(files, registry, tmp_path / "out", signature="classify_intent", since=parse_since("2025-11-01"),
                     min_quality_score=0.96, max_latency_ms=None, max_cost_usd=None)
    assert report.written == {"classify_intent": 3}
    assert not (tmp_path / "out" / "extract_booking.jsonl").exists()
    texts = [e.values["text"] for e in read_batch(tmp_path / "out" / "classify_intent.jsonl")]
    assert texts == ["Someone stole my card", "Where is my card?", "I lost my card yesterday"]  # scores ≥ 0.96
    skipped = report.skipped
    assert skipped["before_since"] == 1 and skipped["other_signature"] == 2
    assert "too_slow" not in skipped and "too_expensive" not in skipped
    assert skipped["low_score"] == 4  # 0.5, 0.8, 0.9, 0.95
    assert skipped["no_feedback"] == 4  # r3, the seed-format line, and r6/r7 which now pass the limits
    assert report.examined == report.collected + sum(skipped.values())


def test_a_truncated_gzip_keeps_what_was_read(tmp_path: Path, registry) -> None:
    good = write(tmp_path / "a.jsonl.gz", [call(f"r{i}", f"message number {i}", at=i) for i in range(50)]
                 + [feedback(f"r{i}", 1.0, at=i) for i in range(50)])
    data = good.read_bytes()
    (tmp_path / "b.jsonl.gz").write_bytes(data[: len(data) // 2])
    report = collect([tmp_path / "b.jsonl.gz"], registry, tmp_path / "out", signature="classify_intent")
    assert report.counts["malformed_lines"] >= 1
    assert any("unreadable past line" in e for e in report.errors)
    assert report.examined == report.collected + sum(report.skipped.values())


def test_inputs_are_deduplicated_by_sorted_key_hash(tmp_path: Path, registry) -> None:
    assert input_hash({"a": 1, "b": 2}) == input_hash({"b": 2, "a": 1})
    path = write(tmp_path / "log.jsonl", [call("a", "same text", at=5), call("b", "same text", at=1),
                                          feedback("a", 1.0), feedback("b", 1.0)])
    report = collect([path], registry, tmp_path / "out")
    [only] = read_batch(tmp_path / "out" / "classify_intent.jsonl")
    assert only.metadata["request_id"] == "b" and report.skipped == {"duplicate": 1}
    assert report.counts["label_from_output"] == 1


def test_errors(tmp_path: Path, registry) -> None:
    with pytest.raises(UnknownProgramError, match="did you mean 'classify_intent'"):
        TelemetryCollector([], registry, signature="classify_intnet")
    with pytest.raises(DataError, match="no such file matches"):
        expand_log_paths([str(tmp_path / "*.jsonl")])
    with pytest.raises(DataError, match="no such file"):
        expand_log_paths([tmp_path / "missing.jsonl"])
    with pytest.raises(DataError, match="number of days"):
        parse_since("last week")
    assert parse_since("7", now=datetime(2026, 1, 8, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01") == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("1.5d", now=datetime(2026, 1, 2, 12, tzinfo=UTC)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_since("2026-01-01T00:00:00+02:00") == datetime(2025, 12, 31, 22, tzinfo=UTC)
    assert parse_since(None) is None and timedelta(0) == timedelta(0)


def cli() -> typer.Typer:
    root = typer.Typer(cls=RatchetGroup)
    root.add_typer(collect_cmd.app, name="collect")
    return root


def test_cli_reads_the_home_telemetry_by_default(logs: Path, tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text(f'home = "{tmp_path / "home"}"\n')
    runner = CliRunner()
    result = runner.invoke(cli(), ["collect", "telemetry", "--output", "out", "--json", "--since", "2025-11-01"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["source"] == "telemetry" and data["written"]["classify_intent"] == 4  # r13 is over 30 days old
    assert data["skipped"]["before_since"] == 1
    human = runner.invoke(cli(), ["collect", "telemetry", "--log-file", str(logs / "*.gz"),
                                  str(logs / "interactions.jsonl"), "-o", "out2", "-s", "classify_intent"])
    assert human.exit_code == 0, human.output
    assert "collected: 5 examples" in human.stdout and "skipped: no_feedback" in human.stdout
    assert "malformed lines" in human.stdout
    unknown = runner.invoke(cli(), ["collect", "telemetry", "-o", "out3", "--signature", "nope"])
    assert unknown.exit_code == 2 and "unknown signature 'nope'" in unknown.stderr
    (tmp_path / "ratchet.toml").write_text(f'home = "{tmp_path / "empty"}"\n')
    empty = runner.invoke(cli(), ["collect", "telemetry", "-o", "out4"])
    assert empty.exit_code == 2 and "no telemetry logs in" in empty.stderr


def test_a_shadow_answer_is_never_a_label(tmp_path: Path, registry) -> None:
    """The feedback on a request judged production's answer; the candidate's unseen answer to it is not labelled."""
    path = write(tmp_path / "t" / "interactions.jsonl", [
        call("r1", "Where is my card?", at=1_000, arm="shadow", output={"intent": "pin_blocked"}, module_version="v4"),
        call("r1", "Where is my card?", at=1_000),
        feedback("r1", 1.0, at=2_000),
    ])
    report = collect([path], registry, tmp_path / "out")
    assert [e.values["intent"] for e in read_batch(tmp_path / "out" / "classify_intent.jsonl")] == ["card_arrival"]
    assert report.skipped["shadow_call"] == 1


def test_one_key_labels_a_bounded_number_of_requests(tmp_path: Path, registry) -> None:
    """Issue 13: data.max_feedback_per_key bounds how many examples one API key's feedback can label."""
    items: list = []
    for i in range(10):
        items.append(call(f"k{i}", f"flood text {i}", at=i))
        record = feedback(f"k{i}", 1.0, {"intent": "lost_or_stolen_card"}, at=i)
        items.append({**record, "principal": "key:flood/aaaaaaaaaaaa"})
    for i in range(3):
        items.append(call(f"o{i}", f"other text {i}", at=100 + i))
        items.append({**feedback(f"o{i}", 1.0, at=100 + i), "principal": "key:app/bbbbbbbbbbbb"})
    path = write(tmp_path / "log.jsonl", items)
    bounded = collect([path], registry, tmp_path / "bounded", max_feedback_per_key=4)
    assert bounded.collected == 4 + 3 and bounded.counts["feedback_over_key_bound"] == 6
    assert collect([path], registry, tmp_path / "all").collected == 13
