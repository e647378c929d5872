"""The whole HTTP server (the API of :func:`ratchet.serve.app.create_app` plus the console), and the console alone."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from ratchet.config import Settings, load_settings
from ratchet.console.context import ConsoleContext
from ratchet.console.routes import add_console
from ratchet.monitor.rollout_alerts import announce_outcome
from ratchet.serve.app import create_app
from ratchet.serve.auth import Authenticator
from ratchet.serve.runtime import Runtime
from ratchet.store.db import StateDB
from ratchet.version import __version__

__all__ = ["create_console_app", "create_server", "server_from_env"]


def create_server(settings: Settings | None = None, *, runtime: Runtime | None = None) -> FastAPI:
    """What ``ratchet serve`` runs: the API and, under ``/ui``, the console (on ``serve.console``, the default).

    Promotions and rollbacks asked over the API are announced on the alert channels, as the console's and
    ``ratchet ab``'s are."""
    settings = settings or (runtime.settings if runtime else load_settings())
    app = create_app(settings, runtime=runtime, announce=announce_outcome(settings))
    if settings.serve.console:
        add_console(app)
    return app


def server_from_env() -> FastAPI:
    """Factory for ``uvicorn --factory`` (each worker builds its own app from ``RATCHET_CONFIG``)."""
    return create_server(load_settings(os.environ.get("RATCHET_CONFIG") or None))


def create_console_app(settings: Settings) -> FastAPI:
    """The console alone (``ratchet ui``): no program is served, nothing is loaded but what the pages read."""
    from ratchet.programs import load_programs
    from ratchet.serve.http_errors import install_error_handlers

    registry = load_programs(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        db = StateDB.connect(settings)
        app.state.console = ConsoleContext.build(settings, registry, db, Authenticator(settings, db))
        try:
            yield
        finally:
            db.dispose()

    app = FastAPI(title="Ratchet console", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None)
    install_error_handlers(app)
    add_console(app)
    return app
