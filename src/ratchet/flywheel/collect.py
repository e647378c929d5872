"""Collect one ISO week's failures per signature from telemetry and the state database.

A failure is one request that went wrong, by the first that applies:

* ``<error_type>`` — the call failed (``parse_error``, ``timeout``, ``lm_error``, …; ``error`` when untyped);
* ``correction`` — feedback carried a corrected output;
* ``low_score`` — feedback scored it under the threshold.

Feedback comes from telemetry's feedback records and from the state database's ``feedback`` table
(joined to ``request_index`` for the signature); the latest revision wins. Inputs and the model's output
come from the request's telemetry record: feedback on a request telemetry did not sample is counted but
has nothing to cluster. Malformed lines and invalid records are skipped and counted.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import and_, select

from ratchet.flywheel.week import IsoWeek
from ratchet.store.db import StateDB
from ratchet.store.jsonl import JsonlReadStats, iter_jsonl
from ratchet.store.tables import canary_runs, feedback, request_index
from ratchet.telemetry.records import FeedbackRecord, InteractionLog, parse_record
from ratchet.telemetry.writer import iter_log_files

__all__ = ["Failure", "LowCanary", "TriageScan", "WeekFailures", "collect_failures", "failure_types", "input_text"]


@dataclass(slots=True)
class Failure:
    """One failed request: what it was asked, what it answered, and how it failed."""

    request_id: str
    signature: str
    failure_type: str
    timestamp_ms: int
    version: str | None = None
    inputs: dict[str, Any] | None = None  # None: telemetry did not sample the request
    output: dict[str, Any] | None = None
    detail: str | None = None  # the error message, or the feedback score
    score: float | None = None
    correction: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "failure_type": self.failure_type, "timestamp_ms": self.timestamp_ms,
                "version": self.version, "inputs": self.inputs, "output": self.output, "detail": self.detail,
                "score": self.score, "correction": self.correction}


@dataclass(slots=True)
class LowCanary:
    """A canary run of the week that scored under the threshold (no per-request inputs to cluster)."""

    signature: str
    version: str
    at: float
    score: float
    n: int
    errors: int
    parse_failures: int

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "at": self.at, "score": self.score, "n": self.n,
                "errors": self.errors, "parse_failures": self.parse_failures}


@dataclass
class TriageScan:
    """What reading saw: telemetry files and lines, skipped lines and records, feedback rows."""

    files: int = 0
    read: JsonlReadStats = field(default_factory=JsonlReadStats)
    invalid_records: int = 0
    invalid_errors: list[str] = field(default_factory=list)
    interactions_in_week: int = 0
    feedback_in_week: int = 0

    def invalid(self, where: str, error: ValueError) -> None:
        self.invalid_records += 1
        if len(self.invalid_errors) < 5:
            self.invalid_errors.append(f"{where}: {error}")

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "lines": self.read.lines, "malformed_lines": self.read.bad_lines,
                "invalid_records": self.invalid_records, "interactions_in_week": self.interactions_in_week,
                "feedback_in_week": self.feedback_in_week, "errors": [*self.read.errors[:5], *self.invalid_errors]}


@dataclass
class WeekFailures:
    """The week's failures by signature, the low canary runs, and the scan."""

    failures: dict[str, list[Failure]]
    low_canaries: dict[str, list[LowCanary]]
    scan: TriageScan


def input_text(inputs: dict[str, Any]) -> str:
    """The text a request is clustered by: its input values, in field order, joined by newlines."""
    parts = []
    for value in inputs.values():
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    return "\n".join(parts)


_RANK = {"error": 0, "correction": 1, "low_score": 2}


def _rank(failure_type: str) -> int:
    return _RANK.get(failure_type, 0)  # every error type outranks feedback


def collect_failures(telemetry_dir: Path, db: StateDB | None, week: IsoWeek, *, score_threshold: float = 0.5,
                     canary_threshold: float | None = 0.5, signature: str | None = None,
                     lookback_days: float = 7.0) -> WeekFailures:
    """Every failure of ``week`` (one per request), by signature, from telemetry and the state database.

    Feedback of the week may score calls served up to ``lookback_days`` before it (the feedback window,
    ``serve.request_index_days``): their telemetry records are kept to give them inputs; files last
    modified before that hold only older calls and are not opened.
    """
    scan = TriageScan()
    interactions: dict[str, InteractionLog] = {}
    feedbacks: dict[str, tuple[int, FeedbackRecord]] = {}
    found: dict[str, Failure] = {}
    directory = Path(telemetry_dir)
    since_ms = week.start_ms - int(lookback_days * 86_400_000)
    for path in iter_log_files(directory) if directory.is_dir() else []:
        try:
            if path.stat().st_mtime * 1000 < since_ms:
                continue
        except OSError:  # rotated or removed meanwhile
            continue
        scan.files += 1
        for data in iter_jsonl(path, scan.read):
            try:
                record = parse_record(data)
            except ValueError as exc:
                scan.invalid(path.name, exc)
                continue
            if signature is not None and record.signature != signature:
                continue
            if isinstance(record, FeedbackRecord):
                if week.contains_ms(record.timestamp_ms):
                    previous = feedbacks.get(record.request_id)
                    if previous is None or record.revision >= previous[0]:
                        feedbacks[record.request_id] = (record.revision, record)
                continue
            if record.request_id and since_ms <= record.timestamp_ms < week.end_ms:
                interactions[record.request_id] = record
            if week.contains_ms(record.timestamp_ms):
                scan.interactions_in_week += 1
                if not record.success:
                    _keep(found, Failure(
                        request_id=record.request_id or f"{path.name}:{scan.read.lines}",
                        signature=record.signature, failure_type=record.error_type or "error",
                        timestamp_ms=record.timestamp_ms, version=record.module_version, inputs=record.input,
                        output=record.output or None, detail=record.error))
    scores = {rid: (fb.signature, fb.score, fb.correction, fb.timestamp_ms) for rid, (_, fb) in feedbacks.items()}
    if db is not None:
        scores.update(_db_feedback(db, week, signature))
    scan.feedback_in_week = len(scores)
    for request_id, (sig, score, correction, at_ms) in scores.items():
        if correction is None and score >= score_threshold:
            continue
        call = interactions.get(request_id)
        _keep(found, Failure(
            request_id=request_id, signature=sig, failure_type="correction" if correction is not None else "low_score",
            timestamp_ms=call.timestamp_ms if call else at_ms, version=call.module_version if call else None,
            inputs=call.input if call else None, output=(call.output or None) if call else None,
            detail=f"score {score:g}", score=score, correction=correction))
    by_signature: dict[str, list[Failure]] = {}
    for failure in sorted(found.values(), key=lambda f: (f.timestamp_ms, f.request_id)):
        by_signature.setdefault(failure.signature, []).append(failure)
    canaries = _low_canaries(db, week, canary_threshold, signature) if db is not None else {}
    return WeekFailures(by_signature, canaries, scan)


def _keep(found: dict[str, Failure], failure: Failure) -> None:
    """Keep one failure per request: a failed call outranks a correction, which outranks a low score."""
    current = found.get(failure.request_id)
    if current is None or _rank(failure.failure_type) < _rank(current.failure_type):
        found[failure.request_id] = failure


def _db_feedback(db: StateDB, week: IsoWeek, signature: str | None
                 ) -> dict[str, tuple[str, float, dict[str, Any] | None, int]]:
    start, end = week.start.timestamp(), week.end.timestamp()
    joined = feedback.join(request_index, feedback.c.request_id == request_index.c.request_id)
    query = (select(feedback.c.request_id, request_index.c.signature, feedback.c.score, feedback.c.correction,
                    feedback.c.created_at).select_from(joined)
             .where(and_(feedback.c.created_at >= start, feedback.c.created_at < end)))
    if signature is not None:
        query = query.where(request_index.c.signature == signature)
    with db.begin() as conn:
        rows = conn.execute(query).all()
    out = {}
    for row in rows:
        try:
            correction = None if row.correction is None else json.loads(row.correction)
        except json.JSONDecodeError:
            correction = {"_unreadable": row.correction}
        out[row.request_id] = (row.signature, float(row.score), correction, int(row.created_at * 1000))
    return out


def _low_canaries(db: StateDB, week: IsoWeek, threshold: float | None, signature: str | None
                  ) -> dict[str, list[LowCanary]]:
    if threshold is None:
        return {}
    query = (select(canary_runs).where(and_(canary_runs.c.at >= week.start.timestamp(),
                                            canary_runs.c.at < week.end.timestamp(), canary_runs.c.score < threshold))
             .order_by(canary_runs.c.at))
    if signature is not None:
        query = query.where(canary_runs.c.signature == signature)
    with db.begin() as conn:
        rows = conn.execute(query).all()
    out: dict[str, list[LowCanary]] = {}
    for row in rows:
        out.setdefault(row.signature, []).append(LowCanary(
            row.signature, row.version, row.at, row.score, row.n, row.errors, row.parse_failures))
    return out


def failure_types(failures: list[Failure]) -> dict[str, int]:
    """How many failures of each type, most common first."""
    return dict(Counter(f.failure_type for f in failures).most_common())
