"""The records of the telemetry log: one JSON object per line.

``InteractionLog`` is seed 002's log format (module_name, module_version, signature,
input, output, timestamp_ms, success required; latency_ms, tokens, cost_usd, model,
error optional) plus what Ratchet needs to learn from it: request_id, arm,
program_fingerprint, error_type, tokens_in and tokens_out, and ``user_pseudonym`` (the keyed pseudonym of the
user id the call was served for, :mod:`ratchet.store.pseudonyms`; absent for calls without one, which therefore
cannot be found by user: the raw id is never written). Ratchet writes
``"record": "interaction"``; lines without ``record`` (seed-format logs from other
tools) are read as interactions. ``FeedbackRecord`` (``"record": "feedback"``) scores
a logged call after the fact, joined on request_id.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = [
    "ARMS",
    "FeedbackRecord",
    "InteractionLog",
    "parse_record",
]

Arm = Literal["baseline", "candidate", "shadow"]  # shadow: a candidate answering unseen (never a label)
ARMS: tuple[str, ...] = ("baseline", "candidate", "shadow")


def _where(name: str, kind: str) -> str:
    return f"{kind} record: field {name!r}"


def _get(d: dict[str, Any], name: str, kind: str, *, required: bool) -> Any:
    if name not in d or (d[name] is None and required):
        if required:
            raise ValueError(f"{_where(name, kind)} is missing")
        return None
    return d[name]


def _str(d: dict[str, Any], name: str, kind: str, *, required: bool = False) -> str | None:
    value = _get(d, name, kind, required=required)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{_where(name, kind)} must be a string, got {type(value).__name__}")
    return value


def _dict(d: dict[str, Any], name: str, kind: str, *, required: bool = False) -> dict[str, Any] | None:
    value = _get(d, name, kind, required=required)
    if value is not None and not isinstance(value, dict):
        raise ValueError(f"{_where(name, kind)} must be an object, got {type(value).__name__}")
    return value


def _bool(d: dict[str, Any], name: str, kind: str) -> bool:
    value = _get(d, name, kind, required=True)
    if not isinstance(value, bool):
        raise ValueError(f"{_where(name, kind)} must be a boolean, got {type(value).__name__}")
    return value


def _number(d: dict[str, Any], name: str, kind: str, *, required: bool = False) -> float | None:
    value = _get(d, name, kind, required=required)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{_where(name, kind)} must be a finite number, got {value!r}")
    if value < 0:
        raise ValueError(f"{_where(name, kind)} must not be negative, got {value!r}")
    return value


def _int(d: dict[str, Any], name: str, kind: str, *, required: bool = False) -> int | None:
    value = _number(d, name, kind, required=required)
    if value is None:
        return None
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{_where(name, kind)} must be an integer, got {value!r}")
        value = int(value)
    return value


@dataclass(slots=True)
class InteractionLog:
    """One logged call of a program (a line of ``interactions*.jsonl``).

    ``output`` is ``{}`` for a failed call. ``tokens`` is filled in from ``tokens_in``
    and ``tokens_out`` when only those are given. Keys this class does not know are
    kept in ``extra`` and written back, so reading and rewriting a line loses nothing.
    """

    module_name: str
    module_version: str
    signature: str
    input: dict[str, Any]
    output: dict[str, Any]
    timestamp_ms: int
    success: bool
    latency_ms: float | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    model: str | None = None
    error: str | None = None
    request_id: str | None = None
    arm: Arm | None = None
    program_fingerprint: str | None = None
    error_type: str | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    user_pseudonym: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    RECORD = "interaction"

    def __post_init__(self) -> None:
        if self.tokens is None and self.tokens_in is not None and self.tokens_out is not None:
            self.tokens = self.tokens_in + self.tokens_out

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record: ``record`` first, then seed 002's fields, then Ratchet's."""
        d: dict[str, Any] = {**self.extra, "record": self.RECORD}
        for name in _INTERACTION_FIELDS:
            d[name] = getattr(self, name)
        if self.user_pseudonym is None:
            del d["user_pseudonym"]  # a call without a user id: nothing to find it by
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InteractionLog:
        """Validate and build a record; ``ValueError`` names the missing or mistyped field."""
        if not isinstance(d, dict):
            raise ValueError(f"interaction record must be a JSON object, got {type(d).__name__}")
        kind = cls.RECORD
        record = d.get("record", kind)
        if record != kind:
            raise ValueError(f"{_where('record', kind)} must be {kind!r}, got {record!r}")
        success = _bool(d, "success", kind)
        output = _dict(d, "output", kind, required=success)
        arm = _str(d, "arm", kind)
        if arm is not None and arm not in ARMS:
            raise ValueError(f"{_where('arm', kind)} must be one of {', '.join(ARMS)}, got {arm!r}")
        timestamp_ms = _int(d, "timestamp_ms", kind, required=True)
        assert timestamp_ms is not None
        return cls(
            module_name=_str(d, "module_name", kind, required=True) or "",
            module_version=_str(d, "module_version", kind, required=True) or "",
            signature=_str(d, "signature", kind, required=True) or "",
            input=_dict(d, "input", kind, required=True) or {},
            output=output or {},
            timestamp_ms=timestamp_ms,
            success=success,
            latency_ms=_number(d, "latency_ms", kind),
            tokens=_int(d, "tokens", kind),
            cost_usd=_number(d, "cost_usd", kind),
            model=_str(d, "model", kind),
            error=_str(d, "error", kind),
            request_id=_str(d, "request_id", kind),
            arm=arm,  # type: ignore[arg-type]
            program_fingerprint=_str(d, "program_fingerprint", kind),
            error_type=_str(d, "error_type", kind),
            tokens_in=_int(d, "tokens_in", kind),
            tokens_out=_int(d, "tokens_out", kind),
            user_pseudonym=_str(d, "user_pseudonym", kind),
            extra={k: v for k, v in d.items() if k not in _INTERACTION_KEYS},
        )


_INTERACTION_FIELDS: tuple[str, ...] = tuple(
    name for name in InteractionLog.__dataclass_fields__ if name != "extra"
)
_INTERACTION_KEYS = frozenset((*_INTERACTION_FIELDS, "record"))


@dataclass(slots=True)
class FeedbackRecord:
    """A score (0..1) and optional corrected output for a logged call, joined on ``request_id``."""

    request_id: str
    signature: str
    score: float
    timestamp_ms: int
    correction: dict[str, Any] | None = None
    principal: str | None = None  # who sent it (key:<name>/<id>, local, library); absent in older logs
    revision: int = 1
    user_pseudonym: str | None = None  # of the user the scored call was served for (absent: unknown or none)

    RECORD = "feedback"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this record, ``"record": "feedback"`` first."""
        d = {
            "record": self.RECORD,
            "request_id": self.request_id,
            "signature": self.signature,
            "score": self.score,
            "correction": self.correction,
            "timestamp_ms": self.timestamp_ms,
            "principal": self.principal,
            "revision": self.revision,
        }
        if self.user_pseudonym is not None:
            d["user_pseudonym"] = self.user_pseudonym
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FeedbackRecord:
        """Validate and build a record; ``ValueError`` names the missing or mistyped field."""
        if not isinstance(d, dict):
            raise ValueError(f"feedback record must be a JSON object, got {type(d).__name__}")
        kind = cls.RECORD
        if d.get("record") != kind:
            raise ValueError(f"{_where('record', kind)} must be {kind!r}, got {d.get('record')!r}")
        score = _number(d, "score", kind, required=True)
        assert score is not None
        if score > 1:
            raise ValueError(f"{_where('score', kind)} must be between 0 and 1, got {score!r}")
        timestamp_ms = _int(d, "timestamp_ms", kind, required=True)
        assert timestamp_ms is not None
        return cls(
            request_id=_str(d, "request_id", kind, required=True) or "",
            signature=_str(d, "signature", kind, required=True) or "",
            score=float(score),
            timestamp_ms=timestamp_ms,
            correction=_dict(d, "correction", kind),
            principal=_str(d, "principal", kind),
            revision=_int(d, "revision", kind) or 1,
            user_pseudonym=_str(d, "user_pseudonym", kind),
        )


def parse_record(d: dict[str, Any]) -> InteractionLog | FeedbackRecord:
    """The record a log line holds, by its ``record`` key (missing: an interaction in seed 002's format)."""
    if not isinstance(d, dict):
        raise ValueError(f"a log record must be a JSON object, got {type(d).__name__}")
    record = d.get("record", InteractionLog.RECORD)
    if record == InteractionLog.RECORD:
        return InteractionLog.from_dict(d)
    if record == FeedbackRecord.RECORD:
        return FeedbackRecord.from_dict(d)
    raise ValueError(f"unknown record type {record!r} (expected 'interaction' or 'feedback')")
