"""The overview: what ``ratchet status`` shows — cycles, controller, experiments, service levels, datasets, alerts."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ratchet.console.access import viewer
from ratchet.console.context import console_context
from ratchet.console.render import page
from ratchet.monitor.dashboard import build_dashboard

__all__ = ["add_routes"]


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    async def overview(request: Request) -> Response:
        user = viewer(request, "read")
        ctx = console_context(request)
        data = await asyncio.to_thread(build_dashboard, ctx.settings, db=ctx.db, registry=ctx.registry)
        return page(request, user, "overview.html", title="Overview", data=data, thresholds=ctx.settings.thresholds)

    console_route(app, "GET", "/ui", "read", overview)
