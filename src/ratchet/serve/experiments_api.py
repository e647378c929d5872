"""Rollout actions over HTTP: list experiments (``read``); pause, resume, promote, roll back (``operator``).

The same controller methods ``ratchet ab`` calls, so every state change is a compare-and-set in the
state database, reaches every server through the routing state, and is audited with the key that
asked for it (``key:<name>/<id>``, source ``http``, the client address).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import Body, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ratchet.audit import audit_context
from ratchet.errors import RatchetError, UnknownExperimentError
from ratchet.rollout import RolloutController
from ratchet.rollout.experiments import Experiment
from ratchet.serve.api_models import ExperimentAnswer, ExperimentsResponse, error_response, error_responses
from ratchet.serve.auth import role_route

__all__ = ["add_experiment_routes"]

Action = Literal["pause", "resume", "promote"]  # rollback has its own route: its reason is required


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, min_length=1, max_length=500,
                               description="why (recorded in the event and the audit log)")


def _public(experiment: Experiment) -> dict[str, Any]:
    """An experiment as clients see it: never its routing salt."""
    out = experiment.to_dict()
    out.pop("salt", None)
    return out


def _controller(request: Request) -> RolloutController:
    """The controller ``ratchet ab`` uses; promotions and rollbacks are announced where the server was given how."""
    rt = request.app.state.runtime
    return RolloutController(rt.settings, rt.registry, db=rt.db,
                             notify=getattr(request.app.state, "announce_rollout", None))


def add_experiment_routes(app: FastAPI) -> None:
    """``GET /v1/experiments``, ``POST /v1/experiments/{experiment_id}/{pause|resume|promote}`` and
    ``POST /v1/experiments/{experiment_id}/rollback`` (with its reason)."""

    @app.get("/v1/experiments", response_model=ExperimentsResponse,
             **role_route("read", responses=error_responses(422, 500)))
    async def list_experiments(request: Request, signature: str | None = None) -> dict[str, Any]:
        """Experiments, oldest first (optionally of one signature), with their stage, split and status."""
        controller = _controller(request)
        found = await asyncio.to_thread(controller.store.list, signature=signature)
        return {"experiments": [_public(e) for e in found]}


    refusals = error_responses(404, 409, 413, 422, 500, s404="no such experiment (unknown_experiment)",
                               s409="the experiment cannot do that now (conflict)")

    # Declared before `{action}`: the schema says a rollback needs its reason (a fuzzer sending a bodiless rollback
    # that the schema allowed was refused).
    @app.post("/v1/experiments/{experiment_id}/rollback", response_model=ExperimentAnswer,
              **role_route("operator", responses=refusals))
    async def rollback(experiment_id: str, request: Request,
                       reason: str = Body(..., embed=True, min_length=1, max_length=500,
                                          description="why (recorded in the event and the audit log)")
                       ) -> JSONResponse:
        """Roll an experiment back now (as ``ratchet ab rollback`` does): production serves everything."""
        return await _act(request, experiment_id, "rollback", reason)

    @app.post("/v1/experiments/{experiment_id}/{action}", response_model=ExperimentAnswer,
              **role_route("operator", responses=refusals))
    async def act(experiment_id: str, action: Action, request: Request, body: ActionRequest | None = None
                  ) -> JSONResponse:
        """Pause, resume or promote an experiment now (as ``ratchet ab <action>`` does)."""
        return await _act(request, experiment_id, action, body.reason if body is not None else None)


async def _act(request: Request, experiment_id: str, action: str, reason: str | None) -> JSONResponse:
    principal = request.state.principal
    client = request.client.host if request.client else None
    controller = _controller(request)
    method = getattr(controller, action)
    kwargs: dict[str, Any] = {"actor": principal.actor}
    if reason:
        kwargs["reason"] = reason

    def run() -> Experiment:
        with audit_context(actor=principal.actor, source="http", client=client):
            return method(experiment_id, **kwargs)

    try:
        changed = await asyncio.to_thread(run)
    except UnknownExperimentError:
        return error_response(404, "unknown_experiment", f"no experiment '{experiment_id}'")
    except RatchetError as exc:  # an illegal transition, or someone else changed it first
        return error_response(409, "conflict", str(exc))
    return JSONResponse(status_code=200, content={"experiment": _public(changed)})
