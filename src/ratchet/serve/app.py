"""The HTTP API (FastAPI): predict, feedback, programs, liveness, readiness, metrics, OpenAPI.

Every registered program gets ``POST /v1/programs/<signature>/predict`` with its
own request schema (so ``/openapi.json`` documents each program's fields). Status
codes: 422 invalid input or text that is not valid (lone surrogates, a body that is not UTF-8),
naming the field, 400 input refused by the injection guard (``{"error": "injection_blocked",
"reason": <rule>, …}``), 404 unknown signature, 413 body too large, an input field longer than
``[limits]`` allows (``field_too_long``, naming the field and its ``limit``) or an input whose prompt
does not fit the model's context (``input_too_long``), 429 over the client's rate (``rate_limited``,
with ``Retry-After``), 503 every call slot taken (``overloaded``, with ``Retry-After``) or model not
available here, 504 LM timeout, 502 LM failure or unparsable answer, 500 anything else. Every error
body is ``{"error": <type>, "message": …}`` (plus ``field`` where one is to blame) or, for a failed
program call, the call's result with ``error_type`` and a fixed ``error`` message; none holds
exception text or a traceback (the log has them, with the request id). Requests refused before the
program ran are never the arm's failures: see :data:`ratchet.serve.errors.REFUSALS`.

The server answers ``/health`` (alive) as soon as it listens and warms up in the
background (:mod:`ratchet.serve.readiness`); ``/ready`` turns 200 when it is warm.

``DELETE /v1/users/{user_id}/data`` (role ``admin``) removes a user's records everywhere
(:mod:`ratchet.privacy`): 200 when every step ended ``ok``/``nothing``, 207 when a step failed (the body
lists each step's status and count; the others still ran, and the deletion may be run again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import tempfile
import threading
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, create_model

from ratchet.audit import audit_context
from ratchet.auth import PUBLIC
from ratchet.config import Settings, load_settings, mask_urls_in_text
from ratchet.errors import (
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
from ratchet.serve import metrics
from ratchet.serve.auth import Authenticator, role_route
from ratchet.serve.body_limit import BodyLimitMiddleware
from ratchet.serve.errors import CLIENT_ERRORS
from ratchet.serve.experiments_api import add_experiment_routes
from ratchet.serve.http_errors import install_error_handlers, public_text
from ratchet.serve.rate_limit import RateLimiter, client_of
from ratchet.serve.readiness import Readiness
from ratchet.serve.result import CallResult
from ratchet.serve.runtime import Runtime
from ratchet.version import __version__

__all__ = ["app_from_env", "create_app"]

log = logging.getLogger(__name__)

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


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    request_id: str = Field(..., min_length=1, max_length=200,
                            description="the request_id a predict response returned (issued by this service)")
    score: float = Field(..., ge=0.0, le=1.0, strict=True,
                         description="quality of the answer, 0 (bad) to 1 (good): a JSON number (not a string, "
                                     "not a boolean)")
    correction: dict[str, Any] | None = Field(None, description="the corrected output fields, if any")


def _predict_model(spec: ProgramSpec) -> type[BaseModel]:
    name = "".join(part.capitalize() for part in spec.name.split("_"))
    return create_model(
        f"{name}PredictRequest",
        __config__=ConfigDict(extra="forbid"),
        inputs=(spec.schema.input_model, Field(..., description=f"the input fields of {spec.name}")),
        request_id=(str | None, Field(None, min_length=1, max_length=200,
                                      description="an idempotency key: the same one always gets the same issued "
                                                  "request_id (send that one with feedback)")),
        user_id=(str | None, Field(None, min_length=1, max_length=200,
                                   description="keeps a user on one arm of an experiment")),
    )


def create_app(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """The application. A ``runtime`` given here is used as is (tests); otherwise one is built at startup."""
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
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.serve.max_body_bytes)
    app.state.limiter = RateLimiter(settings.limits)

    install_error_handlers(app)

    for spec in registry:
        _add_predict_route(app, spec)
    add_experiment_routes(app)

    @app.get("/openapi.json", include_in_schema=False, **role_route("read"))
    async def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @app.post("/v1/programs/{signature}/predict", include_in_schema=False, **role_route("predict"))
    async def unknown_signature(signature: str) -> JSONResponse:
        return JSONResponse(status_code=404, content={
            "error": "unknown_signature", "message": f"unknown signature '{signature}'",
            "registered": registry.names()})

    @app.post("/v1/feedback", status_code=202, **role_route("feedback", responses={
        404: {"description": "request_id was not issued by this service"},
        413: {"description": "a correction longer than limits.max_correction_chars"},
        422: {"description": "invalid score, request id or correction"},
        429: {"description": "over the client's rate ([limits]); Retry-After says when to retry"}}))
    async def feedback(body: FeedbackRequest, request: Request) -> dict[str, Any]:
        """Attach a quality score (and optional corrected outputs) to a served request."""
        rt: Runtime = request.app.state.runtime
        refused = _over_rate(request, "feedback") or rt.field_limits.check_correction(body.correction)
        if refused is not None:
            return _limit_refusal(refused)
        try:
            result = await asyncio.to_thread(rt.feedback, body.request_id, body.score, body.correction,
                                             caller=request.state.principal.actor)
        except UnknownRequestError as exc:
            return JSONResponse(status_code=404, content={"error": "unknown_request", "field": exc.field,
                                                          "message": str(exc)})
        except InputValidationError as exc:
            return JSONResponse(status_code=422, content={"error": "invalid_request", "field": exc.field,
                                                          "message": str(exc)})
        body_out = {"accepted": result.accepted, "matched": result.matched, "request_id": result.request_id,
                    "signature": result.signature, "arm": result.arm, "version": result.version,
                    "revision": result.revision}
        if not result.accepted:
            body_out["reason"] = result.reason
        return body_out

    @app.delete("/v1/users/{user_id}/data", **role_route("admin", responses={
        207: {"description": "some steps failed: each step's status is in the body; run it again"}}))
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

    @app.get("/v1/programs", **role_route("read"))
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

    @app.get("/health", **role_route(PUBLIC))
    async def health(request: Request) -> dict[str, Any]:
        """Liveness: the process answers (whether it is warm yet is ``/ready``'s question)."""
        readiness: Readiness = request.app.state.readiness
        return {"status": "ok", "version": __version__, "ready": readiness.ready, "phase": readiness.phase}

    @app.get("/ready", **role_route(PUBLIC))
    async def ready(request: Request) -> JSONResponse:
        """Readiness: warmed up, state database reachable, telemetry writable; 503 with the reason otherwise."""
        rt: Runtime = request.app.state.runtime
        readiness: Readiness = request.app.state.readiness
        if not readiness.ready:
            status = "failed" if readiness.failed else "starting"
            return JSONResponse(status_code=503, content={"status": status, "version": __version__,
                                                          "warm_up": _public(readiness.to_dict())})
        checks = await asyncio.to_thread(_dependency_checks, rt)
        ok = all(check["ok"] for check in checks.values())
        return JSONResponse(status_code=200 if ok else 503,
                            content={"status": "ready" if ok else "unavailable", "version": __version__,
                                     "warm_up": _public(readiness.to_dict()), "checks": checks})

    @app.get("/metrics", **role_route("read"))
    async def prometheus() -> Response:
        return Response(metrics.render_latest(), media_type=metrics.CONTENT_TYPE_LATEST)

    return app


def _add_predict_route(app: FastAPI, spec: ProgramSpec) -> None:
    body_model = _predict_model(spec)

    async def predict(body, request: Request) -> JSONResponse:
        rt: Runtime = request.app.state.runtime
        readiness: Readiness = request.app.state.readiness
        limited = _over_rate(request, "predict")
        if limited is not None:
            return _limit_refusal(limited)
        if readiness.error == "model_not_available":  # why (CPU, build, file) is for operators: /ready and the log
            return JSONResponse(status_code=503, content={"error": readiness.error,
                                                          "message": "the model cannot run on this server"})
        result = await rt.acall(spec.name, body.inputs.model_dump(), request_id=body.request_id,
                                user_id=body.user_id, caller=request.state.principal.actor)
        if result.error_type in CLIENT_ERRORS:
            return _refused(result.error_type or "invalid_request", result.exception, result.request_id)
        if isinstance(result.exception, LimitError):  # overloaded: no call slot freed in time
            return _limit_refusal(result.exception, result.request_id)
        payload = result.to_dict()
        if result.success:
            return JSONResponse(status_code=200, content=payload)
        _log_failure(result)
        status = STATUS_BY_ERROR.get(result.error_type or "internal", 500)
        return JSONResponse(status_code=status, content=payload)

    predict.__annotations__ = {"body": body_model, "request": Request, "return": JSONResponse}
    predict.__doc__ = f"Run {spec.name}: {spec.description}"
    app.post(f"/v1/programs/{spec.name}/predict", name=f"predict_{spec.name}", summary=f"Predict: {spec.name}",
             **role_route("predict", responses={
                 400: {"description": "input refused by the injection guard"},
                 413: {"description": "body too large, an input field over its [limits] length, or an input too "
                                      "long for the model's context"},
                 422: {"description": "invalid input"},
                 429: {"description": "over the client's rate ([limits]); Retry-After says when to retry"},
                 502: {"description": "LM failure"},
                 503: {"description": "every call slot taken (overloaded; Retry-After), or the model cannot run "
                                      "on this machine"},
                 504: {"description": "LM timeout"}}))(predict)


def _public(warm_up: dict[str, Any]) -> dict[str, Any]:
    """The warm-up report without file paths, nor the text of an unexpected exception (the log has both)."""
    if warm_up.get("error") == "warm_up_failed":
        warm_up["message"] = "warm-up failed; the server log has the details"
    elif warm_up.get("message"):  # model_not_available: Ratchet's own explanation of what to change
        warm_up["message"] = public_text(str(warm_up["message"]))
    return warm_up


def _over_rate(request: Request, endpoint: str) -> LimitError | None:
    """The refusal when the request's client is over its ``[limits]`` rate (counted either way)."""
    limiter: RateLimiter = request.app.state.limiter
    return limiter.check(client_of(request), endpoint)


def _limit_refusal(exc: LimitError | FieldTooLongError, request_id: str | None = None) -> JSONResponse:
    """429 ``rate_limited`` or 503 ``overloaded`` with ``Retry-After``; 413 ``field_too_long`` for a correction."""
    if isinstance(exc, FieldTooLongError):
        return JSONResponse(status_code=413, content={"error": "field_too_long", "field": exc.field,
                                                      "limit": exc.limit, "length": exc.length, "message": str(exc)})
    overloaded = isinstance(exc, OverloadedError)
    content: dict[str, Any] = {"error": "overloaded" if overloaded else "rate_limited", "message": str(exc),
                               "retry_after_s": exc.retry_after_s}
    if request_id is not None:
        content["request_id"] = request_id
    return JSONResponse(status_code=503 if overloaded else 429, content=content,
                        headers={"Retry-After": str(exc.retry_after_s)})


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
    content: dict[str, Any] = {"error": error_type, "field": getattr(exc, "field", None),
                               "message": str(exc) if exc is not None else error_type, "request_id": request_id}
    if isinstance(exc, InjectionBlockedError):
        content["reason"] = exc.rule
    if isinstance(exc, InputTooLongError):
        content.update(tokens=exc.tokens, limit=exc.limit)
    if isinstance(exc, FieldTooLongError):
        content.update(limit=exc.limit, length=exc.length)
    return JSONResponse(status_code=STATUS_BY_ERROR.get(error_type, 422), content=content)


def _dependency_checks(rt: Runtime) -> dict[str, dict[str, Any]]:
    checks: dict[str, dict[str, Any]] = {}
    checks["model"] = {"ok": rt.model_loaded, "model": rt.lms.model_id,
                       "detail": "loaded" if rt.model_loaded else "weights not loaded"}
    try:
        rt.db.ping()
        checks["state_db"] = {"ok": True, "dialect": rt.db.dialect}
    except Exception as exc:  # the kind of error only: its text may name hosts, users and paths (logged instead)
        log.warning("readiness: the state database is not reachable: %s", mask_urls_in_text(str(exc)))
        checks["state_db"] = {"ok": False, "detail": f"not reachable ({type(exc).__name__}; the server log has "
                                                     "the details)"}
    checks["telemetry"] = _writable(rt.telemetry.directory)
    stats = rt.telemetry.stats()
    checks["telemetry"].update({"queue_depth": stats.get("queue_depth"), "dropped": stats.get("dropped")})
    checks["versions"] = _versions_check(rt)
    follower = rt.follower
    checks["routing"] = {"ok": follower.last_error is None, "version": follower.current().version,
                         "file_repairs": follower.repairs}
    if follower.last_error is not None:  # its text is in the log (the follower logs each failed read)
        checks["routing"]["detail"] = "serving the last verified state: the routing state cannot be read now"
    return checks


def _versions_check(rt: Runtime) -> dict[str, Any]:
    """Every program version that serves now can be loaded (a missing one answers 503 version_unavailable)."""
    from ratchet.errors import VersionError

    state = rt.follower.current()
    missing = []
    for spec in rt.registry:
        for arm, version in rt.served.serving_now(spec.name, state):
            try:
                rt.served.get(spec, version, arm)
            except VersionError as exc:
                missing.append({"signature": spec.name, "arm": arm, "version": version,
                                "detail": public_text(str(exc))[:300]})
    return {"ok": not missing, "unavailable": missing} if missing else {"ok": True}


def _writable(directory: Path) -> dict[str, Any]:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".health-", delete=True):
            pass
        return {"ok": True}
    except OSError as exc:  # the path is in the log and in `ratchet doctor`, never in a public answer
        log.warning("telemetry directory %s is not writable: %s", directory, exc)
        return {"ok": False, "detail": exc.strerror or "not writable"}


def app_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker process builds its own app from ``RATCHET_CONFIG``)."""
    return create_app(load_settings(os.environ.get("RATCHET_CONFIG") or None))
