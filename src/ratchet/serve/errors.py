"""Sort failures of a served call into the error types metrics, counters and HTTP statuses use."""

from __future__ import annotations

import asyncio

from dspy.lm15 import LM15Error
from dspy.lm15 import RateLimitError as LM15RateLimitError
from dspy.lm15 import TimeoutError as LM15TimeoutError
from dspy.utils.exceptions import AdapterParseError, LMError, LMRateLimitError, LMTimeoutError

from ratchet.errors import (
    InjectionBlockedError,
    InputTooLongError,
    InputValidationError,
    InvalidTextError,
    ModelError,
    VersionError,
)

__all__ = ["CLIENT_ERRORS", "ERROR_TYPES", "LM_FAILURES", "classify_error"]

ERROR_TYPES = ("invalid_request", "invalid_text", "input_too_long", "injection_blocked", "timeout", "rate_limit",
               "lm_error", "parse_error", "version_unavailable", "internal")
LM_FAILURES = frozenset({"timeout", "rate_limit", "lm_error"})  # a fallback LM may help with these
# Refused before the program ran, because of what the request holds: never an arm's failure.
CLIENT_ERRORS = frozenset({"invalid_request", "invalid_text", "input_too_long", "injection_blocked"})


def classify_error(exc: BaseException) -> str:
    """One of :data:`ERROR_TYPES` for an exception raised while serving."""
    if isinstance(exc, InjectionBlockedError):
        return "injection_blocked"
    if isinstance(exc, InvalidTextError):
        return "invalid_text"
    if isinstance(exc, InputTooLongError):
        return "input_too_long"
    if isinstance(exc, InputValidationError):
        return "invalid_request"
    if isinstance(exc, AdapterParseError):
        return "parse_error"
    if isinstance(exc, VersionError):
        return "version_unavailable"
    if isinstance(exc, (LMTimeoutError, LM15TimeoutError, asyncio.TimeoutError, TimeoutError)):
        return "timeout"
    if isinstance(exc, (LMRateLimitError, LM15RateLimitError)):
        return "rate_limit"
    if isinstance(exc, (LMError, LM15Error, ModelError)):
        return "lm_error"
    cause = exc.__cause__
    if cause is not None and cause is not exc:
        inner = classify_error(cause)
        if inner != "internal":
            return inner
    return "internal"
