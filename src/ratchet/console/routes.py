"""Mounting the console on an app: every route declares its role (``x-ratchet-console-role``), refusals become pages.

:func:`console_route` is how a page module adds a route; :func:`add_console` adds them all, the static files,
login and logout, and the handlers that turn :class:`LoginRequired` into a redirect to the login page and
:class:`Forbidden` into a 403 page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response

from ratchet.auth.roles import PUBLIC, ROLES
from ratchet.console.access import Forbidden, LoginRequired, PageNotFound
from ratchet.console.render import page, redirect, secure

__all__ = ["CONSOLE_ROLE", "add_console", "console_route"]

CONSOLE_ROLE = "x-ratchet-console-role"
"""The role a console route declares (its own key: the API's ``x-ratchet-role`` routes expect an API key header)."""

_STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".svg": "image/svg+xml", ".ico": "image/x-icon"}


def console_route(app: FastAPI, method: str, path: str, role: str, endpoint: Callable[..., Any]) -> None:
    """Add a console route for ``role`` (``public``, or one of the key roles), kept out of the API schema."""
    if role != PUBLIC and role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    app.add_api_route(path, endpoint, methods=[method], include_in_schema=False, response_class=HTMLResponse,
                      openapi_extra={CONSOLE_ROLE: role})


@lru_cache(maxsize=32)
def _asset(name: str) -> tuple[bytes, str] | None:
    """A shipped static file and its ETag; None for anything not shipped."""
    if "/" in name or name.startswith(".") or not any(name.endswith(ext) for ext in _STATIC_TYPES):
        return None
    node = resources.files("ratchet.console").joinpath("static", name)
    if not node.is_file():
        return None
    data = node.read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:16]


async def _static(request: Request, name: str) -> Response:
    found = _asset(name)
    if found is None:
        return secure(Response("not found", status_code=404, media_type="text/plain"))
    data, etag = found
    headers = {"ETag": f'"{etag}"', "Cache-Control": "public, max-age=3600"}
    if request.headers.get("if-none-match") == f'"{etag}"':
        return secure(Response(status_code=304, headers=headers))
    media = _STATIC_TYPES[name[name.rfind("."):]]
    response = Response(data, media_type=media, headers=headers)
    return secure(response)


async def _login_required(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, LoginRequired)
    return redirect(request, exc.location)


async def _forbidden(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    user = getattr(request.state, "console_user", None)
    return page(request, user, "error.html", title="Not allowed", status=403, message=exc.message)


async def _not_found(request: Request, exc: Exception) -> Response:
    user = getattr(request.state, "console_user", None)
    return page(request, user, "error.html", title="Not found", status=404, message=str(exc))


def add_console(app: FastAPI) -> None:
    """Every console page under ``/ui`` on ``app`` (which must provide ``app.state.console`` or a serving runtime)."""
    from ratchet.console.pages import PAGES
    from ratchet.console.pages.login import add_login_routes

    app.add_exception_handler(LoginRequired, _login_required)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(PageNotFound, _not_found)
    console_route(app, "GET", "/ui/static/{name}", PUBLIC, _static)
    add_login_routes(app)
    for add_routes in PAGES:
        add_routes(app)

    async def root(request: Request) -> Response:  # /ui/ → /ui
        return redirect(request, "/ui")

    console_route(app, "GET", "/ui/", PUBLIC, root)
