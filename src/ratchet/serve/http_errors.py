"""One JSON shape for every HTTP error, ``{"error": <type>, "message": …}`` (plus ``field``), never a traceback.

FastAPI's own answers (``{"detail": …}``) are reshaped here: request validation errors become
``invalid_request`` naming the field, a body that is not valid UTF-8 becomes ``invalid_text``
(422), other HTTP errors keep their status with a type derived from it, and an unexpected
exception is logged with its traceback under a new request id and answered ``internal`` (500) with that id,
never its text.
:func:`public_text` takes absolute file paths out of text a client may read.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from ratchet.serve.api_models import error_response

__all__ = ["install_error_handlers", "public_text"]

log = logging.getLogger(__name__)

_BODY_PARSE_ERROR = "There was an error parsing the body"  # FastAPI: the body is not UTF-8 (or not decodable)
_ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~-])(?:~|/)(?:[\w.@+-]+/)+([\w.@+-]+)")


def public_text(text: str) -> str:
    """``text`` with every absolute path shortened to ``…/<name>`` (a client need not know the layout)."""
    return _ABSOLUTE_PATH.sub(lambda m: "…/" + m.group(1), text)


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation errors, HTTP errors and unexpected exceptions in the one error shape."""
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _internal)


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    first = next((e for e in errors if e.get("type") == "extra_forbidden"), errors[0])  # typos first
    loc = [str(p) for p in first.get("loc", ())]
    if loc[:1] == ["body"]:
        loc = loc[1:]
    if loc[:1] == ["inputs"] and len(loc) > 1:
        loc = loc[1:]
    kind = first.get("type")
    if kind == "json_invalid":
        return error_response(422, "invalid_request", "the request body is not valid JSON", field=None)
    if loc[:1] == ["correction"] and len(loc) > 1:  # feedback: matched none of the programs' outputs (a union)
        return _invalid_correction(errors)
    field = ".".join(loc) or None
    message = {"missing": f"missing field '{field}'", "extra_forbidden": f"unknown field '{field}'"}.get(
        str(kind), f"field '{field}': {first.get('msg')}")
    return error_response(422, "invalid_request", message, field=field)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _BODY_PARSE_ERROR:
        return error_response(422, "invalid_text", "the request body is not valid UTF-8 text", field=None)
    try:
        phrase = HTTPStatus(exc.status_code).phrase
    except ValueError:
        phrase = "error"
    error = phrase.lower().replace(" ", "_").replace("-", "_")
    message = exc.detail if isinstance(exc.detail, str) else phrase
    return error_response(exc.status_code, error, public_text(message), headers=getattr(exc, "headers", None))


async def _internal(request: Request, exc: Exception) -> JSONResponse:
    request_id = uuid.uuid4().hex  # names the log entry: the client never reads the exception's text
    log.error("request %s: unhandled error answering %s %s", request_id, request.method, request.url.path,
              exc_info=exc, extra={"event": "unhandled_error", "request_id": request_id})
    return error_response(500, "internal", "internal error; the server log has the details under this request_id",
                          request_id=request_id)


def _invalid_correction(errors: list) -> JSONResponse:
    """A correction that is no program's outputs. Its errors come per program (``correction.<Model>.<field>``):
    a wrong value under a known field name says most (``correction.intent``), else no program's fields match."""
    for error in errors:
        loc = [str(p) for p in error.get("loc", ())]
        if loc[:2] == ["body", "correction"] and len(loc) > 3 and error.get("type") not in (
                "extra_forbidden", "missing"):
            field = ".".join(["correction", *loc[3:]])
            return error_response(422, "invalid_request", f"field '{field}': {error.get('msg')}", field=field)
    return error_response(422, "invalid_request", "field 'correction': not the output fields of any program served "
                          "here (FeedbackRequest in /openapi.json lists them)", field="correction")
