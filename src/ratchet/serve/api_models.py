"""The HTTP API's bodies as pydantic models: what ``/openapi.json`` documents is what the server sends.

Every answer is built from (or checked against) one of these models, so the schema a client
or a fuzzer reads is the contract the server keeps: :class:`ErrorBody` for every error status,
a model per program for its requests and answers (:func:`predict_models`), and the answers of
feedback, programs, health and readiness. Response models forbid undocumented keys
(``additionalProperties: false``), so a field added to an answer without its schema is caught
by ``tests/integration/test_api_fuzz.py``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal, Union

from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, create_model

from ratchet.programs import ProgramSpec
from ratchet.routing import Arm

__all__ = [
    "DeletionResponse",
    "DeletionStepInfo",
    "ErrorBody",
    "ExperimentAnswer",
    "ExperimentInfo",
    "ExperimentsResponse",
    "FeedbackRequest",
    "FeedbackResponse",
    "FieldInfo",
    "HealthResponse",
    "ProgramInfo",
    "ProgramsResponse",
    "ReadyResponse",
    "RouteInfo",
    "TokenCounts",
    "error_response",
    "error_responses",
    "feedback_request_model",
    "predict_models",
]

_CORRECTION = ("the corrected output fields of the program that served the request: the outputs of one of the "
               "programs served here (409 correction_mismatch when they are another program's)")


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(_Body):
    """Every error answer: a stable type for programs, a sentence for people, never a traceback."""

    error: str = Field(..., description="the error's type: invalid_request, invalid_text, input_too_long, "
                                        "injection_blocked, payload_too_large, field_too_long, rate_limited, "
                                        "overloaded, unknown_request, "
                                        "correction_mismatch, unknown_experiment, conflict, timeout, rate_limit, "
                                        "lm_error, parse_error, model_not_available, version_unavailable, "
                                        "internal, or the HTTP status's name (unauthorized, forbidden, "
                                        "not_found, method_not_allowed, …)")
    message: str = Field(..., description="what went wrong, for people")
    field: str | None = Field(None, description="the request field to blame, when one is")
    request_id: str | None = Field(None, description="the request's id (in the server log and telemetry)")
    reason: str | None = Field(None, description="injection_blocked: the guard's rule")
    tokens: int | None = Field(None, description="input_too_long: the prompt's length in the model's tokens")
    limit: int | None = Field(None, description="input_too_long: the most tokens a prompt may have; "
                                                "field_too_long: the most characters the field may have")
    length: int | None = Field(None, description="field_too_long: the field's length in characters")
    retry_after_s: float | None = Field(None, description="rate_limited, overloaded: when to retry (also the "
                                                          "Retry-After header)")
    registered: list[str] | None = Field(None, description="unknown_signature: the signatures served here")


def error_response(status_code: int, error: str, message: str, *, headers: dict[str, str] | None = None,
                   **fields: Any) -> JSONResponse:
    """An :class:`ErrorBody` answer (its keys checked by the model; keys not given are left out)."""
    body = ErrorBody(error=error, message=message, **fields)
    return JSONResponse(status_code=status_code, content=body.model_dump(exclude_unset=True), headers=headers)


_ERROR_DESCRIPTIONS = {
    400: "input refused by the injection guard (injection_blocked, with the rule as reason)",
    404: "not found",
    409: "the correction's fields are not the outputs of the program that served the request "
         "(correction_mismatch)",
    413: "body too large (payload_too_large), an input field longer than [limits] allows (field_too_long, with "
         "limit and length), or an input too long for the model's context (input_too_long, with tokens and limit)",
    429: "over the client's rate ([limits]: rate_limited); Retry-After says when to retry",
    422: "invalid request: a field is missing, unknown or of the wrong type (invalid_request), or text that is "
         "not valid (invalid_text); field names it",
    500: "unexpected error (internal; logged, never its text)",
    502: "the language model failed or its answer could not be parsed (lm_error, rate_limit, parse_error)",
    503: "every call slot taken (overloaded; Retry-After says when to retry), the model cannot run on this "
         "machine (model_not_available) or a served version cannot be loaded (version_unavailable)",
    504: "the language model did not answer in time (timeout)",
}


def error_responses(*statuses: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for a route: each status answered with an :class:`ErrorBody` (descriptions by ``s413=…``)."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody,
                       "description": descriptions.get(f"s{status}", _ERROR_DESCRIPTIONS.get(status, "error"))}
    return out


class TokenCounts(_Body):
    input: int = Field(..., ge=0)
    output: int = Field(..., ge=0)


def _camel(spec: ProgramSpec) -> str:
    return "".join(part.capitalize() for part in spec.name.split("_"))


def outputs_model(spec: ProgramSpec) -> type[BaseModel]:
    """The output fields of ``spec`` as a model named after it (``ClassifyIntentOutputs``), one per program."""
    model = _OUTPUTS.get(spec.name)
    if model is None or model.__base__ is not spec.schema.output_model:
        model = _OUTPUTS[spec.name] = create_model(f"{_camel(spec)}Outputs", __base__=spec.schema.output_model)
    return model


_OUTPUTS: dict[str, type[BaseModel]] = {}


def predict_models(spec: ProgramSpec) -> tuple[type[BaseModel], type[BaseModel]]:
    """The request and the 200 answer of ``POST /v1/programs/<spec.name>/predict``, named after the program."""
    name = _camel(spec)
    inputs = create_model(f"{name}Inputs", __base__=spec.schema.input_model)
    outputs = outputs_model(spec)
    request = create_model(
        f"{name}PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        inputs=(inputs, Field(..., description=f"the input fields of {spec.name}")),
        request_id=(str | None, Field(None, min_length=1, max_length=200,
                                      description="an idempotency key: the same one always gets the same issued "
                                                  "request_id (send that one with feedback)")),
        user_id=(str | None, Field(None, min_length=1, max_length=200,
                                   description="keeps a user on one arm of an experiment")),
    )
    response = create_model(
        f"{name}PredictResponse",
        __base__=_Body,
        request_id=(str, Field(..., description="issued by this service: send it with feedback")),
        signature=(Literal[spec.name], ...),  # type: ignore[valid-type]
        version=(str, Field(..., description="the program version that answered")),
        arm=(Literal["baseline", "candidate"], Field(..., description="the experiment arm that answered")),
        success=(Literal[True], ...),
        outputs=(outputs, Field(..., description=f"the output fields of {spec.name}")),
        latency_ms=(float, Field(..., ge=0)),
        tokens=(TokenCounts, ...),
        cost_usd=(float | None, Field(..., description="null when the model's price is unknown")),
        model=(str, Field(..., description="the model that answered")),
        sampled=(bool, Field(..., description="a copy went to telemetry")),
        fallback_used=(bool, Field(..., description="the fallback model answered")),
        error_type=(None, Field(None, description="always null here (errors answer an ErrorBody)")),
        error=(None, Field(None, description="always null here")),
    )
    return request, response


class FeedbackRequest(_Body):
    """The feedback body; :func:`feedback_request_model` types its ``correction`` by the programs served."""

    request_id: str = Field(..., min_length=1, max_length=200,
                            description="the request_id a predict response returned (issued by this service)")
    score: float = Field(..., ge=0.0, le=1.0, strict=True,
                         description="quality of the answer, 0 (bad) to 1 (good): a JSON number (not a string, "
                                     "not a boolean)")
    correction: Any = Field(None, description=_CORRECTION)

    def correction_fields(self) -> dict[str, Any] | None:
        """The correction as a plain object (the fields the client sent), or None."""
        if isinstance(self.correction, BaseModel):
            return self.correction.model_dump(mode="json", exclude_unset=True)
        return self.correction


def feedback_request_model(specs: Iterable[ProgramSpec]) -> type[FeedbackRequest]:
    """:class:`FeedbackRequest` whose ``correction`` must be the outputs of one of ``specs`` (or null)."""
    models = tuple(outputs_model(spec) for spec in specs)
    correction: Any = Union[(*models, None)] if models else None
    return create_model("FeedbackRequest", __base__=FeedbackRequest,
                        correction=(correction, Field(None, description=_CORRECTION)))


class FeedbackResponse(_Body):
    accepted: bool = Field(..., description="stored (false: the request was served too long ago; see reason)")
    matched: bool = Field(..., description="the request is known: its signature, version and arm")
    request_id: str
    signature: str | None = None
    arm: Arm | None = None
    version: str | None = None
    reason: str | None = Field(None, description="why it was not accepted")
    revision: int | None = Field(None, ge=1, description="1 for the first feedback on the request, then one more "
                                                         "per revision")


class FieldInfo(_Body):
    name: str
    role: Literal["input", "output"]
    type: str
    description: str | None = None
    choices: list[str] | None = None


class RouteInfo(_Body):
    baseline_version: str
    candidate_version: str | None
    candidate_share: float = Field(..., ge=0, le=1)
    state: str


class ProgramInfo(_Body):
    signature: str
    description: str
    inputs: list[FieldInfo]
    outputs: list[FieldInfo]
    production_version: str
    routing: RouteInfo | None = Field(..., description="the experiment splitting its traffic, if any")


class ProgramsResponse(_Body):
    programs: list[ProgramInfo]
    routing_version: int


class HealthResponse(_Body):
    status: Literal["ok"]
    version: str
    ready: bool
    phase: str = Field(..., description="warm-up phase: starting, model, programs, ready or failed")


class ReadyResponse(_Body):
    status: Literal["ready", "unavailable", "starting", "failed"]
    version: str
    warm_up: dict[str, Any] = Field(..., description="the warm-up report: phase, and when ready what was warmed")
    checks: dict[str, dict[str, Any]] | None = Field(
        None, description="once warm: model, state_db, telemetry, versions and routing, each with ok")


class ExperimentInfo(_Body):
    """An experiment as clients see it (never its routing salt)."""

    experiment_id: str
    signature: str
    baseline_version: str
    candidate_version: str
    status: str = Field(..., description="shadow, running, paused, promoted or rolled_back")
    stages: list[int] = Field(..., description="the candidate's traffic percent at each stage")
    stage_index: int
    stage_started_at: float
    min_stage_minutes: float
    min_stage_requests: int
    config: dict[str, Any]
    stage_start_requests: int
    paused_at: float | None
    paused_seconds: float
    reason: str | None
    created_at: float
    updated_at: float
    ended_at: float | None
    revision: int
    candidate_share: float = Field(..., ge=0, le=1)
    shadow_share: float = Field(..., ge=0, le=1)


class ExperimentsResponse(_Body):
    experiments: list[ExperimentInfo]


class ExperimentAnswer(_Body):
    experiment: ExperimentInfo


class DeletionStepInfo(BaseModel):
    """One step of a user's deletion; steps add their own counts (files, versions, …), so more keys may follow."""

    model_config = ConfigDict(extra="allow")

    step: str
    status: str = Field(..., description="ok, nothing or failed")
    count: int = Field(..., ge=0)
    seconds: float = Field(..., ge=0)
    error: str | None = Field(None, description="failed: what went wrong")


class DeletionResponse(_Body):
    """``DELETE /v1/users/{user_id}/data``: every step with its status and counts (the user by pseudonym only)."""

    user: str = Field(..., description="the user's keyed pseudonym (the raw id is never kept)")
    users: int = Field(..., ge=0)
    deletion_id: str
    status: Literal["ok", "failed"]
    started_at: str
    seconds: float = Field(..., ge=0)
    steps: list[DeletionStepInfo]
