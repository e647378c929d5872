"""What one served call did: the prediction and everything measured about it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dspy

from ratchet.routing import Arm
from ratchet.serve.errors import REFUSALS, public_message

__all__ = ["CallResult", "FeedbackResult"]


@dataclass
class CallResult:
    """The outcome of :meth:`ratchet.Runtime.call`.

    ``success`` is False when the call failed; ``error_type`` then says how
    (``invalid_request``, ``invalid_text``, ``field_too_long``, ``input_too_long``, ``injection_blocked``,
    ``overloaded``, ``timeout``, ``rate_limit``, ``lm_error``, ``parse_error``, ``version_unavailable`` or
    ``internal``), ``error`` is the exception's text and ``exception`` the error. The first six were refused
    before the program ran (:data:`ratchet.serve.errors.REFUSALS`: the client's errors, and no free call slot):
    not counted as the arm's request (nor its failure), indexed or sampled, only in
    ``ratchet_rejected_requests_total``. :meth:`to_dict` is what a client may read: for the other types its
    ``error`` is a fixed message (:func:`ratchet.serve.errors.public_message`), never the exception's text.
    """

    request_id: str
    signature: str
    version: str
    arm: Arm
    success: bool
    latency_ms: float
    outputs: dict[str, Any] | None = None
    prediction: dspy.Prediction | None = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    error_type: str | None = None
    error: str | None = None
    sampled: bool = False
    fallback_used: bool = False
    model: str = ""
    exception: BaseException | None = field(default=None, repr=False)
    trace_id: str | None = None  # the OpenTelemetry trace and span of the call, when it was exported ([otel])
    span_id: str | None = None

    @property
    def tokens(self) -> int:
        return self.tokens_in + self.tokens_out

    def raise_for_error(self) -> CallResult:
        """Re-raise the call's exception when it failed; return self otherwise."""
        if not self.success and self.exception is not None:
            raise self.exception
        return self

    def to_dict(self) -> dict[str, Any]:
        """The result as a client may read it (no exception text but the refusals' own messages)."""
        return {
            "request_id": self.request_id,
            "signature": self.signature,
            "version": self.version,
            "arm": self.arm,
            "success": self.success,
            "outputs": self.outputs,
            "latency_ms": round(self.latency_ms, 3),
            "tokens": {"input": self.tokens_in, "output": self.tokens_out},
            "cost_usd": self.cost_usd,
            "model": self.model,
            "sampled": self.sampled,
            "fallback_used": self.fallback_used,
            "error_type": self.error_type,
            "error": None if self.success else self.public_error(),
        }

    def public_error(self) -> str:
        """What a client reads about this failure: a refusal's own message, else the fixed text of its type."""
        if self.error_type in REFUSALS and self.error is not None:
            return self.error
        return public_message(self.error_type)


@dataclass
class FeedbackResult:
    """What happened to a feedback score."""

    request_id: str
    accepted: bool  # stored; False when the request was served longer ago than serve.request_index_days
    matched: bool  # the request is known (its signature, version and arm)
    signature: str | None = None
    arm: str | None = None
    version: str | None = None
    sampled: bool = False
    reason: str | None = None  # why it was not accepted
    revision: int | None = None  # 1 for the first feedback on the request, then one more per revision
