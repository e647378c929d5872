"""What one program call writes to telemetry: its record, its token usage, and the redaction of its free text."""

from __future__ import annotations

import time
from typing import Any

import dspy

from ratchet.serve import metrics
from ratchet.telemetry.records import InteractionLog
from ratchet.telemetry.redact import Redactor

__all__ = ["FREE_TEXT", "interaction_record", "lm_usage", "redact_free_text"]

FREE_TEXT = ("input", "output", "correction", "error")
"""The parts of a record users and the model wrote: redacted before it is queued (ids, versions, fingerprints
stay intact for joins)."""


def redact_free_text(redactor: Redactor, record: dict[str, Any]) -> None:
    """Redact PII in ``record``'s free-text parts in place, counting each kind in ``ratchet_redactions_total``."""
    for key in FREE_TEXT:
        if record.get(key) is not None:
            record[key], counts = redactor.redact(record[key])
            for kind, count in counts.items():
                metrics.REDACTIONS.labels(kind).inc(count)


def interaction_record(module_name: str, fingerprint: str | None, version: str, signature: str, values: dict[str, Any],
                 outputs: dict[str, Any] | None, *, latency_s: float, tokens: tuple[int, int], cost: float | None,
                 model: str, error: BaseException | None, error_type: str | None, request_id: str,
                 arm: str, user: str | None) -> dict[str, Any]:
    """The telemetry record of one program call (a served request, or a shadow call), before redaction."""
    tokens_in, tokens_out = tokens
    return InteractionLog(
        module_name=module_name, module_version=version, signature=signature, input=values, output=outputs,
        timestamp_ms=int(time.time() * 1000), latency_ms=round(latency_s * 1000, 3), tokens=tokens_in + tokens_out,
        tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost, model=model, success=error is None,
        error=None if error is None else str(error)[:500], request_id=request_id, arm=arm,  # type: ignore[arg-type]
        program_fingerprint=fingerprint, error_type=error_type, user_pseudonym=user,
    ).to_dict()


def lm_usage(prediction: dspy.Prediction | None) -> tuple[int, int]:
    """Prompt and completion tokens a prediction's LM calls used (0, 0 when unknown)."""
    if prediction is None:
        return 0, 0
    getter = getattr(prediction, "get_lm_usage", None)
    usage = getter() if callable(getter) else None
    if not usage:
        return 0, 0
    tokens_in = sum(int((u or {}).get("prompt_tokens") or 0) for u in usage.values())
    tokens_out = sum(int((u or {}).get("completion_tokens") or 0) for u in usage.values())
    return tokens_in, tokens_out

