"""What the Programs and Datasets pages share: read-only pages built off the event loop, query values read
strictly, refusals as pages (:class:`PageError`: a bad query value is a 400, never a traceback), table columns.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ratchet.console.access import PageNotFound, viewer
from ratchet.console.context import ConsoleContext, console_context
from ratchet.console.render import page
from ratchet.errors import UnknownProgramError
from ratchet.programs.registry import ProgramSpec

__all__ = ["BadQuery", "PageError", "add_page_errors", "field_order", "query_choice", "query_page", "read_page",
           "spec_or_404"]

MAX_PAGE = 1_000_000


class PageError(Exception):
    """A page that cannot be shown as asked: its status, title and a sentence saying why."""

    status = 500
    title = "Cannot show this page"

    def __init__(self, message: str, *, status: int | None = None, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status or self.status
        self.title = title or self.title


class BadQuery(PageError):
    """A query value the page cannot use (a 400 page)."""

    status = 400
    title = "Bad request"


async def _page_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PageError)
    user = getattr(request.state, "console_user", None)
    return page(request, user, "error.html", title=exc.title, status=exc.status, message=exc.message)


def add_page_errors(app: FastAPI) -> None:
    app.add_exception_handler(PageError, _page_error)


async def read_page(request: Request, template: str, build: Callable[..., dict[str, Any]], *args: Any,
                    title: str | Callable[[dict[str, Any]], str]) -> Response:
    """A page for the ``read`` role: ``build(ctx, *args)`` (in a thread: it reads files) fills ``template``."""
    user = viewer(request, "read")
    data = await asyncio.to_thread(build, console_context(request), *args)
    return page(request, user, template, title=title(data) if callable(title) else title, **data)


def query_choice(request: Request, name: str, choices: Sequence[str], default: str | None) -> str | None:
    """The query value ``name``, one of ``choices`` (``default`` when absent or empty)."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return default
    if value not in choices:
        raise BadQuery(f"'{name}' must be one of {', '.join(choices)} (got {value[:60]!r})")
    return value


def query_page(request: Request, name: str = "page") -> int:
    """A page number (1 when absent): a whole number from 1."""
    value = request.query_params.get(name)
    if value in (None, ""):
        return 1
    if not value.isascii() or not value.isdigit() or not 1 <= int(value) <= MAX_PAGE:
        raise BadQuery(f"'{name}' must be a page number from 1 (got {value[:60]!r})")
    return int(value)


def spec_or_404(ctx: ConsoleContext, signature: str) -> ProgramSpec:
    """The registered program ``signature`` names; the 404 page when none."""
    try:
        return ctx.registry.get(signature)
    except UnknownProgramError as exc:
        raise PageNotFound(str(exc)) from None


def field_order(spec: ProgramSpec, rows: list[dict[str, Any]]) -> list[str]:
    """The columns of a table of examples: the signature's inputs, then outputs, then any other key seen."""
    names = [*spec.schema.input_names, *spec.schema.output_names]
    extra = sorted({key for row in rows for key in row} - set(names))
    return [*names, *extra]
