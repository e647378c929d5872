"""The telemetry log records: seed 002's InteractionLog plus Ratchet's fields, and feedback."""

from __future__ import annotations

import json

import pytest

from ratchet.telemetry.records import FeedbackRecord, InteractionLog, parse_record

SEED_LINE = {  # seed 002's example, as other tools write it (no "record" key)
    "module_name": "reviewer",
    "module_version": "baseline",
    "signature": "extract_requirements",
    "input": {"user_intent": "Implement user authentication", "context": "REST API project"},
    "output": {"requirements": ["JWT token generation", "Password hashing with bcrypt", "Session management"]},
    "timestamp_ms": 1699564800000,
    "latency_ms": 250,
    "tokens": 120,
    "cost_usd": 0.0018,
    "model": "claude-haiku-4-5",
    "success": True,
    "error": None,
}


def full_log() -> InteractionLog:
    return InteractionLog(
        module_name="triage", module_version="v3", signature="triage_ticket", input={"text": "help"},
        output={"urgency": "high"}, timestamp_ms=1_700_000_000_123, success=True, latency_ms=12.5, cost_usd=0.0001,
        model="openai/gpt-4o-mini", request_id="req-1", arm="candidate", program_fingerprint="ab12",
        tokens_in=100, tokens_out=7,
    )


def test_interaction_round_trips_through_json() -> None:
    log = full_log()
    d = json.loads(json.dumps(log.to_dict()))
    assert next(iter(d)) == "record" and d["record"] == "interaction"
    assert d["tokens"] == 107  # filled in from tokens_in + tokens_out
    assert InteractionLog.from_dict(d) == log
    assert parse_record(d) == log


def test_seed_format_line_parses_as_interaction() -> None:
    log = parse_record(dict(SEED_LINE))
    assert isinstance(log, InteractionLog)
    assert log.signature == "extract_requirements" and log.tokens == 120 and log.request_id is None
    d = log.to_dict()
    assert {k: d[k] for k in SEED_LINE} == SEED_LINE


def test_unknown_keys_are_kept() -> None:
    log = InteractionLog.from_dict({**SEED_LINE, "redacted": ["email"]})
    assert log.extra == {"redacted": ["email"]}
    assert log.to_dict()["redacted"] == ["email"]


def test_failed_call_may_have_no_output() -> None:
    log = InteractionLog.from_dict({**SEED_LINE, "success": False, "output": None, "error": "timeout",
                                    "error_type": "TimeoutError"})
    assert log.output == {} and log.error_type == "TimeoutError"


@pytest.mark.parametrize("name", ["module_name", "module_version", "signature", "input", "output", "timestamp_ms",
                                  "success"])
def test_missing_required_field_is_named(name: str) -> None:
    d = dict(SEED_LINE)
    del d[name]
    with pytest.raises(ValueError, match=f"'{name}' is missing"):
        InteractionLog.from_dict(d)


@pytest.mark.parametrize(("name", "value"), [
    ("module_name", 3), ("input", ["a"]), ("output", "x"), ("timestamp_ms", "2024"), ("timestamp_ms", 1.5),
    ("timestamp_ms", True), ("success", "yes"), ("latency_ms", "fast"), ("latency_ms", -1), ("tokens", 1.5),
    ("cost_usd", float("inf")), ("model", 1), ("arm", "control"), ("request_id", 7), ("tokens_in", "3"),
])
def test_mistyped_field_is_named(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=f"'{name}'"):
        InteractionLog.from_dict({**SEED_LINE, name: value})


def test_integral_float_timestamp_is_accepted() -> None:
    assert InteractionLog.from_dict({**SEED_LINE, "timestamp_ms": 1699564800000.0}).timestamp_ms == 1699564800000


def test_feedback_round_trips() -> None:
    fb = FeedbackRecord(request_id="req-1", signature="triage_ticket", score=0.5, timestamp_ms=1,
                        correction={"urgency": "low"})
    d = json.loads(json.dumps(fb.to_dict()))
    assert d["record"] == "feedback"
    assert FeedbackRecord.from_dict(d) == fb
    assert parse_record(d) == fb


@pytest.mark.parametrize(("change", "field"), [
    ({"score": 1.5}, "score"), ({"score": -0.1}, "score"), ({"score": "good"}, "score"),
    ({"correction": "low"}, "correction"), ({"request_id": None}, "request_id"),
    ({"timestamp_ms": None}, "timestamp_ms"),
])
def test_feedback_errors_name_the_field(change: dict, field: str) -> None:
    d = {**FeedbackRecord("r", "s", 1.0, 1).to_dict(), **change}
    with pytest.raises(ValueError, match=f"'{field}'"):
        FeedbackRecord.from_dict(d)


def test_parse_record_refuses_unknown_types() -> None:
    with pytest.raises(ValueError, match="unknown record type 'metric'"):
        parse_record({"record": "metric"})
    with pytest.raises(ValueError, match="JSON object"):
        parse_record([1, 2])  # type: ignore[arg-type]
