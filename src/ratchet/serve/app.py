"""The HTTP API (FastAPI): predict, feedback, programs, liveness, readiness, metrics, OpenAPI.

Every registered program gets ``POST /v1/programs/<signature>/predict`` with its
own request schema (so ``/openapi.json`` documents each program's fields). Status
codes: 422 invalid input or text that is not valid (lone surrogates, a body that is not UTF-8),
naming the field, 400 input refused by the injection guard (``{"error": "injection_blocked",
"reason": <rule>, …}``), 404 unknown signature, 413 body too large, an input field longer than
``[limits]`` allows (``field_too_long``, naming the field and its ``limit``) or an input whose prompt
does not fit the model's context (``input_too_long``), 429 over the client's rate (``rate_limited``,
with ``Retry-After``), 503 every call slot taken (``overloaded``, with ``Retry-After``) or model not
available here, 504 LM timeout, 502 LM failure or unparsable answer, 500 anything else, 409 a feedback
correction with another program's fields (``correction_mismatch``). Every error body is an
:class:`~ratchet.serve.api_models.ErrorBody`, ``{"error": <type>, "message": …}`` (plus ``field`` where one
is to blame and the ``request_id`` of a call that ran; a failed program call's message is a fixed one);
none holds exception text or a traceback (the log has them, with the request id). Requests refused before
the program ran are never the arm's failures: see :data:`ratchet.serve.errors.REFUSALS`. Every answer is
documented in ``/openapi.json`` with its model (:mod:`ratchet.serve.api_models`); ``/metrics`` is text.

The server answers ``/health`` (alive) as soon as it listens and warms up in the
background (:mod:`ratchet.serve.readiness`); ``/ready`` turns 200 when it is warm.

With ``[otel]`` on, each predict call is an OpenTelemetry span, the child of the request's W3C ``traceparent``
(:mod:`ratchet.serve.tracing`); the answer names it in a ``traceresponse`` header (W3C Trace Context Level 2).

``DELETE /v1/users/{user_id}/data`` (role ``admin``) removes a user's records everywhere
(:mod:`ratchet.privacy`): 200 when every step ended ``ok``/``nothing``, 207 when a step failed (the body
lists each step's status and count; the others still ran, and the deletion may be run again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from ratchet.audit import audit_context
from ratchet.auth import PUBLIC
from ratchet.config import Settings, load_settings
from ratchet.errors import (
    CorrectionMismatchError,
    FieldTooLongError,
    InjectionBlockedError,
    InputTooLongError,
    InputValidationError,
    LimitError,
    OverloadedError,
    UnknownRequestError,
)
from ratchet.privacy import delete_user_data
from ratchet.programs import ProgramSpec, load_programs
from ratchet.rollout import Experiment
from ratchet.serve import metrics
from ratchet.serve.api_models import (
    DeletionResponse,
    FeedbackRequest,
    FeedbackResponse,
    HealthResponse,
    ProgramsResponse,
    ReadyResponse,
    error_response,
    error_responses,
    feedback_request_model,
    predict_models,
)
from ratchet.serve.auth import Authenticator, RoleRoute, role_route
from ratchet.serve.body_limit import BodyLimitMiddleware
from ratchet.serve.errors import CLIENT_ERRORS
from ratchet.serve.experiments_api import add_experiment_routes
from ratchet.serve.http_errors import install_error_handlers, public_text
from ratchet.serve.rate_limit import RateLimiter, client_of
from ratchet.serve.readiness import Readiness, dependency_checks, public_warm_up
from ratchet.serve.result import CallResult
from ratchet.serve.runtime import Runtime
from ratchet.version import __version__

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger(__name__)

FEEDBACK_OPERATION = "feedback"  # the operationId predict's answers link to (OpenAPI links: request_id → feedback)

STATUS_BY_ERROR = {
    "invalid_request": 422,
    "invalid_text": 422,
    "field_too_long": 413,
    "input_too_long": 413,
    "injection_blocked": 400,
    "overloaded": 503,
    "timeout": 504,
    "rate_limit": 502,
    "lm_error": 502,
    "parse_error": 502,
    "version_unavailable": 503,
    "internal": 500,
}


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None,
               announce: Callable[[Experiment], None] | None = None) -> FastAPI:
    """The application. A ``runtime`` given here is used as is (tests); otherwise one is built at startup.

    ``announce`` is called with an experiment that an operator promoted or rolled back over the API (the whole
    server passes the monitor's alert sender, :func:`ratchet.console.server.create_server`; serve cannot import it).
    """
    settings = settings or (runtime.settings if runtime else load_settings())
    registry = runtime.registry if runtime else load_programs(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.runtime = runtime or Runtime(settings, registry=registry)
        app.state.auth = Authenticator(settings, app.state.runtime.db)
        owned = runtime is None
        app.state.readiness = Readiness()
        warming = threading.Thread(target=app.state.readiness.run, args=(app.state.runtime.warm_up,),
                                   name="ratchet-warm-up", daemon=True)
        warming.start()
        try:
            yield
        finally:
            if owned:
                app.state.runtime.close()

    app = FastAPI(title="Ratchet", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Serve registered DSPy programs with gradual rollouts and telemetry. "
                  "Send an API key (`ratchet keys create`) as X-API-Key or Authorization: Bearer; each operation "
                  "names the role it needs in `x-ratchet-role`.")
    app.router.route_class = RoleRoute  # every route checks its role's key before its body is read
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serve.max_body_bytes)
    app.state.limiter = RateLimiter(settings.limits)
    app.state.announce_rollout = announce

    install_error_handlers(app)

    for spec in registry:
        _add_predict_route(app, spec)
    add_experiment_routes(app)

    @app.get("/openapi.json", include_in_schema=False, **role_route("read"))
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.post("/v1/programs/{signature}/predict", include_in_schema=False, **role_route("predict"))
    async def unknown_signature(signature: str) -> JSONResponse:
        return error_response(404, "unknown_signature", f"unknown signature '{signature}'",
                              registered=registry.names())

    async def feedback(body: FeedbackRequest, request: Request) -> JSONResponse:
        """Attach a quality score (and optional corrected outputs) to a request this service answered."""
        rt: Runtime = request.app.state.runtime
        correction = body.correction_fields()
        refused = _over_rate(request, "feedback") or rt.field_limits.check_correction(correction)
        if refused is not None:
            return _limit_refusal(refused)
        try:
            result = await asyncio.to_thread(rt.feedback, body.request_id, body.score, correction,
                                             caller=request.state.principal.actor)
        except UnknownRequestError as exc:
            return error_response(404, "unknown_request", str(exc), field=exc.field)
        except CorrectionMismatchError as exc:
            return error_response(409, "correction_mismatch", str(exc), field=exc.field)
        except InputValidationError as exc:
            return error_response(422, "invalid_request", str(exc), field=exc.field)
        answer = FeedbackResponse(accepted=result.accepted, matched=result.matched, request_id=result.request_id,
                                  signature=result.signature, arm=result.arm, version=result.version,
                                  revision=result.revision)
        if not result.accepted:
            answer.reason = result.reason
        return JSONResponse(status_code=202, content=answer.model_dump(exclude_unset=True))

    feedback.__annotations__ = {"body": feedback_request_model(registry), "request": Request,
                                "return": JSONResponse}
    app.post("/v1/feedback", status_code=202, response_model=FeedbackResponse, operation_id=FEEDBACK_OPERATION,
             **role_route("feedback", responses=error_responses(
                 404, 409, 413, 422, 429, 500, s404="the request_id was not issued by this service (unknown_request)",
                 s413="body too large (payload_too_large), or a correction longer than limits.max_correction_chars "
                      "(field_too_long)")))(feedback)

    @app.delete("/v1/users/{user_id}/data", response_model=DeletionResponse, **role_route("admin", responses={
        207: {"model": DeletionResponse,
              "description": "some steps failed: each step's status is in the body; run it again"},
        **error_responses(422, 500)}))
    async def delete_user(user_id: str, request: Request) -> JSONResponse:
        """Right to deletion: remove every record of ``user_id`` (telemetry, shadow and feedback records, request
        index, dataset examples, demos). 200 when every step ended ok/nothing, 207 when a step failed (the body
        names it; the others ran). The raw id is never stored: the answer names the user by pseudonym."""
        rt: Runtime = request.app.state.runtime
        principal = getattr(request.state, "principal", None)
        with audit_context(actor=principal.actor if principal else None, source="http",
                           client=request.client.host if request.client else None):
            await asyncio.to_thread(rt.flush)  # this process's queued records of the user are written, then deleted
            report = await asyncio.to_thread(delete_user_data, rt.settings, user_id)
        body = report.to_dict()
        for step in body["steps"]:
            if step.get("error"):
                step["error"] = public_text(step["error"])
        return JSONResponse(status_code=207 if report.failed else 200, content=body)

    @app.get("/v1/programs", response_model=ProgramsResponse, response_model_exclude_unset=True,
             **role_route("read", responses=error_responses(500)))
    async def programs(request: Request) -> dict[str, Any]:
        """Registered programs, their schemas, and what serves them now."""
        rt: Runtime = request.app.state.runtime
        state = rt.follower.current()
        out = []
        for spec in rt.registry:
            route = state.routing.route(spec.name)
            out.append({
                "signature": spec.name,
                "description": spec.description,
                **spec.schema.to_dict(),
                "production_version": state.production_of(spec.name),
                # Never the routing salt, nor the experiment id (the salt of experiments started before salts
                # were random): a client who knew it could choose user ids that land on the candidate.
                "routing": None if route is None else {
                    "baseline_version": route.baseline_version, "candidate_version": route.candidate_version,
                    "candidate_share": route.candidate_share, "state": route.state},
            })
        return {"programs": out, "routing_version": state.version}

    @app.get("/health", response_model=HealthResponse, **role_route(PUBLIC, responses=error_responses(500)))
    async def health(request: Request) -> dict[str, Any]:
        """Liveness: the process answers (whether it is warm yet is ``/ready``'s question)."""
        readiness: Readiness = request.app.state.readiness
        return {"status": "ok", "version": __version__, "ready": readiness.ready, "phase": readiness.phase}

    @app.get("/ready", response_model=ReadyResponse, **role_route(PUBLIC, responses={
        503: {"model": ReadyResponse, "description": "not ready: starting, failed (warm_up says why) or unavailable "
                                                     "(checks say which)"},
        **error_responses(500)}))
    async def ready(request: Request) -> JSONResponse:
        """Readiness: warmed up, state database reachable, telemetry writable; 503 with the reason otherwise."""
        rt: Runtime = request.app.state.runtime
        readiness: Readiness = request.app.state.readiness
        if not readiness.ready:
            status = "failed" if readiness.failed else "starting"
            return JSONResponse(status_code=503, content={"status": status, "version": __version__,
                                                          "warm_up": public_warm_up(readiness.to_dict())})
        checks = await asyncio.to_thread(dependency_checks, rt)
        ok = all(check["ok"] for check in checks.values())
        return JSONResponse(status_code=200 if ok else 503,
                            content={"status": "ready" if ok else "unavailable", "version": __version__,
                                     "warm_up": public_warm_up(readiness.to_dict()), "checks": checks})

    # response_class=Response (no media type of its own): the 200 is documented as text, the errors as JSON.
    @app.get("/metrics", response_class=Response, **role_route("read", responses={
        200: {"description": "Prometheus text exposition format",
              "content": {metrics.CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        **error_responses(500)}))
    async def prometheus() -> Response:
        """Prometheus metrics (text exposition format)."""
        return Response(metrics.render_latest(), media_type=metrics.CONTENT_TYPE_LATEST)

    return app


def _add_predict_route(app: FastAPI, spec: ProgramSpec) -> None:
    body_model, response_model = predict_models(spec)

    async def predict(body, request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        readiness: Readiness = request.app.state.readiness
        limited = _over_rate(request, "predict")
        if limited is not None:
            return _limit_refusal(limited)
        if readiness.error == "model_not_available":  # why (CPU, build, file) is for operators: /ready and the log
            return error_response(503, readiness.error, "the model cannot run on this server")
        result = await rt.acall(spec.name, body.inputs.model_dump(), request_id=body.request_id,
                                user_id=body.user_id, caller=request.state.principal.actor,
                                trace_context=_trace_context(request) if rt.tracer is not None else None)
        return _traced(result, _answer(result))

    predict.__annotations__ = {"body": body_model, "request": Request, "return": JSONResponse}
    predict.__doc__ = f"Run {spec.name}: {spec.description}"
    app.post(f"/v1/programs/{spec.name}/predict", name=f"predict_{spec.name}", summary=f"Predict: {spec.name}",
             response_model=response_model,
             **role_route("predict", responses={
                 200: {"links": {"feedback": {
                     "operationId": FEEDBACK_OPERATION, "requestBody": {"request_id": "$response.body#/request_id"},
                     "description": "score this answer: feedback names it by the request_id it returned"}}},
                 **error_responses(400, 413, 422, 429, 500, 502, 503, 504)}))(predict)


def _answer(result: CallResult) -> JSONResponse:
    """The HTTP answer of a predict call: its result, a refusal, or the error of its type."""
    if result.error_type in CLIENT_ERRORS:
        return _refused(result.error_type or "invalid_request", result.exception, result.request_id)
    if isinstance(result.exception, LimitError):  # overloaded: no call slot freed in time
        return _limit_refusal(result.exception, result.request_id)
    if result.success:
        return JSONResponse(status_code=200, content=result.to_dict())
    _log_failure(result)
    error = result.error_type or "internal"
    return error_response(STATUS_BY_ERROR.get(error, 500), error, result.public_error(), request_id=result.request_id)


def _trace_context(request: Request) -> dict[str, str]:
    """The W3C Trace Context headers of a request (only those: the others, API keys among them, stay here)."""
    return {name: value for name in ("traceparent", "tracestate") if (value := request.headers.get(name))}


def _traced(result: CallResult, response: JSONResponse) -> JSONResponse:
    """Name the call's exported span in a ``traceresponse`` header (W3C Trace Context Level 2), when it has one."""
    if result.trace_id and result.span_id:
        response.headers["traceresponse"] = f"00-{result.trace_id}-{result.span_id}-01"
    return response


def _over_rate(request: Request, endpoint: str) -> LimitError | None:
    """The refusal when the request's client is over its ``[limits]`` rate (counted either way)."""
    limiter: RateLimiter = request.app.state.limiter
    return limiter.check(client_of(request), endpoint)


def _limit_refusal(exc: LimitError | FieldTooLongError, request_id: str | None = None) -> JSONResponse:
    """429 ``rate_limited`` or 503 ``overloaded`` with ``Retry-After``; 413 ``field_too_long`` for a correction."""
    if isinstance(exc, FieldTooLongError):
        return error_response(413, "field_too_long", str(exc), field=exc.field, limit=exc.limit, length=exc.length)
    overloaded = isinstance(exc, OverloadedError)
    extra: dict[str, Any] = {} if request_id is None else {"request_id": request_id}
    return error_response(503 if overloaded else 429, "overloaded" if overloaded else "rate_limited", str(exc),
                          headers={"Retry-After": str(exc.retry_after_s)}, retry_after_s=exc.retry_after_s, **extra)


def _log_failure(result: CallResult) -> None:
    """Log a failed call's exception (text and traceback) under its request id: the client reads a fixed message."""
    level = logging.ERROR if result.error_type in ("internal", "version_unavailable") else logging.WARNING
    exc = result.exception
    log.log(level, "request %s: %s %s (%s arm) failed: %s: %s", result.request_id, result.signature, result.version,
            result.arm, result.error_type, result.error,
            exc_info=(type(exc), exc, exc.__traceback__) if exc is not None else None,
            extra={"event": "call_failed", "request_id": result.request_id, "signature": result.signature,
                   "error_type": result.error_type})


def _refused(error_type: str, exc: BaseException | None, request_id: str) -> JSONResponse:
    """The answer to a request refused for what it holds (one of ``CLIENT_ERRORS``)."""
    extra: dict[str, Any] = {}
    if isinstance(exc, InjectionBlockedError):
        extra["reason"] = exc.rule
    if isinstance(exc, InputTooLongError):
        extra.update(tokens=exc.tokens, limit=exc.limit)
    if isinstance(exc, FieldTooLongError):
        extra.update(limit=exc.limit, length=exc.length)
    return error_response(STATUS_BY_ERROR.get(error_type, 422), error_type,
                          str(exc) if exc is not None else error_type, field=getattr(exc, "field", None),
                          request_id=request_id, **extra)


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app from ``RATCHET_CONFIG``): the API
    alone, without the console or alerts for API promotions; ``ratchet.console.server:server_from_env`` is all."""
    return create_app(load_settings(os.environ.get("RATCHET_CONFIG") or None))
