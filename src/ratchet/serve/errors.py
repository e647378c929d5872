"""Sort failures of a served call into the error types metrics, counters and HTTP statuses use."""

from __future__ import annotations

import asyncio

from dspy.lm15 import LM15Error
from dspy.lm15 import RateLimitError as LM15RateLimitError
from dspy.lm15 import TimeoutError as LM15TimeoutError
from dspy.utils.exceptions import AdapterParseError, LMError, LMRateLimitError, LMTimeoutError

from ratchet.errors import (
    FieldTooLongError,
    InjectionBlockedError,
    InputTooLongError,
    InputValidationError,
    InvalidTextError,
    ModelError,
    OverloadedError,
    VersionError,
)

__all__ = ["CLIENT_ERRORS", "ERROR_TYPES", "LM_FAILURES", "PUBLIC_MESSAGES", "REFUSALS", "classify_error",
           "public_message"]

ERROR_TYPES = ("invalid_request", "invalid_text", "field_too_long", "input_too_long", "injection_blocked",
               "overloaded", "timeout", "rate_limit", "lm_error", "parse_error", "version_unavailable", "internal")
LM_FAILURES = frozenset({"timeout", "rate_limit", "lm_error"})  # a fallback LM may help with these
# Refused before the program ran, because of what the request holds: never an arm's failure.
CLIENT_ERRORS = frozenset({"invalid_request", "invalid_text", "field_too_long", "input_too_long",
                           "injection_blocked"})
# Every refusal before the program ran: the client's errors, and no call slot free (serve.max_concurrent_calls).
# None is the arm's request or failure; each counts only in ratchet_rejected_requests_total.
REFUSALS = CLIENT_ERRORS | {"overloaded"}
# What a client reads about a failure of the program or its LM: fixed text, never the exception's (which may hold
# paths, URLs, keys or the provider's internals); the server log has that under the request id.
PUBLIC_MESSAGES = {
    "timeout": "the language model did not answer in time",
    "rate_limit": "the language model provider refused the call (rate limit); try again later",
    "lm_error": "the language model call failed",
    "parse_error": "the language model's answer could not be read into the output fields",
    "version_unavailable": "the program version for this request cannot be loaded",
    "internal": "internal error",
}
_LOGGED = "; the server log has the details under this request_id"


def public_message(error_type: str | None) -> str:
    """The fixed text a client reads for a failure of type ``error_type`` (refusals carry their own messages)."""
    return PUBLIC_MESSAGES.get(error_type or "internal", PUBLIC_MESSAGES["internal"]) + _LOGGED


def classify_error(exc: BaseException) -> str:
    """One of :data:`ERROR_TYPES` for an exception raised while serving."""
    if isinstance(exc, InjectionBlockedError):
        return "injection_blocked"
    if isinstance(exc, InvalidTextError):
        return "invalid_text"
    if isinstance(exc, InputTooLongError):
        return "input_too_long"
    if isinstance(exc, FieldTooLongError):
        return "field_too_long"
    if isinstance(exc, OverloadedError):
        return "overloaded"
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
