"""Rollout actions over HTTP: list experiments (``read``); pause, resume, promote, roll back (``operator``).

The same controller methods ``ratchet ab`` calls, so every state change is a compare-and-set in the
state database, reaches every server through the routing state, and is audited with the key that
asked for it (``key:<name>/<id>``, source ``http``, the client address).
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from ratchet.audit import audit_context
from ratchet.errors import RatchetError, UnknownExperimentError
from ratchet.rollout import RolloutController
from ratchet.rollout.experiments import Experiment
from ratchet.serve.auth import role_route

__all__ = ["add_experiment_routes"]

Action = Literal["pause", "resume", "promote", "rollback"]


class ActionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, min_length=1, max_length=500,
                               description="why (recorded in the event and the audit log); required for rollback")


def _public(experiment: Experiment) -> dict[str, Any]:
    """An experiment as clients see it: never its routing salt."""
    out = experiment.to_dict()
    out.pop("salt", None)
    return out


def _controller(request: Request) -> RolloutController:
    rt = request.app.state.runtime
    return RolloutController(rt.settings, rt.registry, db=rt.db)


def add_experiment_routes(app: FastAPI) -> None:
    """``GET /v1/experiments`` and ``POST /v1/experiments/{experiment_id}/{action}``."""

    @app.get("/v1/experiments", **role_route("read"))
    async def list_experiments(request: Request, signature: str | None = None) -> dict[str, Any]:
        """Experiments, oldest first (optionally of one signature), with their stage, split and status."""
        controller = _controller(request)
        found = await asyncio.to_thread(controller.store.list, signature=signature)
        return {"experiments": [_public(e) for e in found]}


    @app.post("/v1/experiments/{experiment_id}/{action}", **role_route("operator", responses={
        404: {"description": "no such experiment"}, 409: {"description": "the experiment cannot do that now"},
        422: {"description": "invalid request (rollback needs a reason)"}}))
    async def act(experiment_id: str, action: Action, request: Request, body: ActionRequest | None = None
                  ) -> JSONResponse:
        """Pause, resume, promote or roll back an experiment now (as ``ratchet ab <action>`` does)."""
        reason = body.reason if body is not None else None
        if action == "rollback" and not reason:
            return JSONResponse(status_code=422, content={"error": "invalid_request", "field": "reason",
                                                          "message": "a rollback needs a reason"})
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
            return JSONResponse(status_code=404, content={"error": "unknown_experiment",
                                                          "message": f"no experiment '{experiment_id}'"})
        except RatchetError as exc:  # an illegal transition, or someone else changed it first
            return JSONResponse(status_code=409, content={"error": "conflict", "message": str(exc)})
        return JSONResponse(status_code=200, content={"experiment": _public(changed)})
