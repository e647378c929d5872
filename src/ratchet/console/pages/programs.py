"""Programs: each signature's versions with their lineage and scores, one version's instructions and demos, and
the diff of two versions — from :mod:`ratchet.programs.describe`, as ``ratchet programs versions|show|diff``."""

from __future__ import annotations

import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ratchet.console.access import PageNotFound, viewer
from ratchet.console.context import ConsoleContext, console_context
from ratchet.console.pages.common import BadQuery, PageError, add_page_errors, field_order, read_page, spec_or_404
from ratchet.console.render import redirect
from ratchet.errors import UnknownVersionError, VersionError
from ratchet.programs.describe import diff_versions, list_versions, show_version, word_diff
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramSpec
from ratchet.programs.versions import BASE_VERSION, VersionStore

__all__ = ["add_routes"]

_VERSION = re.compile(r"^(base|v\d{1,9})$")


def _pointers(ctx: ConsoleContext) -> ProductionPointers:
    return ProductionPointers(ctx.db, VersionStore(ctx.settings.home_dir, ctx.db))


def programs_index(ctx: ConsoleContext) -> dict[str, Any]:
    pointers = _pointers(ctx)
    return {"signatures": [{"spec": spec, "listing": list_versions(pointers, spec.name)} for spec in ctx.registry]}


def _damaged(exc: VersionError) -> PageError:
    return PageError(f"{exc} — the version's files are damaged", status=500, title="Damaged version")


def version_page(ctx: ConsoleContext, signature: str, version: str) -> dict[str, Any]:
    spec = spec_or_404(ctx, signature)
    if not _VERSION.match(version):
        raise PageNotFound(f"signature '{spec.name}' has no version '{version[:60]}'")
    pointers = _pointers(ctx)
    try:
        shown = show_version(pointers.versions, spec, version)
    except UnknownVersionError as exc:
        raise PageNotFound(str(exc)) from None
    except VersionError as exc:
        raise _damaged(exc) from None
    demos = [d for p in shown["predictors"].values() for d in p["demos"]]
    return {"spec": spec, "version_name": version, "shown": shown, "production": pointers.get(spec.name),
            "columns": field_order(spec, demos),
            "children": [v.version for v in pointers.versions.list(spec.name) if v.parent == version]}


def _known(spec: ProgramSpec, known: list[str], name: str, value: str) -> str:
    if not _VERSION.match(value):
        raise BadQuery(f"'{name}' must be a version of {spec.name} (base or v1, v2, …), got {value[:60]!r}")
    if value not in known:
        raise PageNotFound(f"signature '{spec.name}' has no version '{value}' (known: {', '.join(known)})")
    return value


def diff_page(ctx: ConsoleContext, signature: str, a: str | None, b: str | None) -> dict[str, Any]:
    """Versions ``a`` → ``b`` (by default: the newest version and its parent, else the one before it)."""
    spec = spec_or_404(ctx, signature)
    pointers = _pointers(ctx)
    listing = list_versions(pointers, spec.name)
    known = [BASE_VERSION, *(v.version for v in listing.versions)]
    b = _known(spec, known, "b", b or known[-1])
    if a is None:
        parent = next((v.parent for v in listing.versions if v.version == b), None)
        a = parent if parent in known and parent != b else known[max(0, known.index(b) - 1)]
    a = _known(spec, known, "a", a)
    try:
        result = diff_versions(pointers.versions, spec, a, b)
    except UnknownVersionError as exc:
        raise PageNotFound(str(exc)) from None
    except VersionError as exc:
        raise _damaged(exc) from None
    predictors = {}
    for name, change in result["predictors"].items():
        rows = change["demos_added"] + change["demos_removed"] + change["demos_kept"]
        predictors[name] = {**change, "words": word_diff(change["instructions_before"], change["instructions_after"]),
                            "columns": field_order(spec, rows)}
    return {"spec": spec, "a": a, "b": b, "known": known, "production": listing.production,
            "predictors": predictors}


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    add_page_errors(app)

    async def programs(request: Request) -> Response:
        return await read_page(request, "programs.html", programs_index, title="Programs")

    async def program_diff(request: Request, signature: str) -> Response:
        a, b = request.query_params.get("a") or None, request.query_params.get("b") or None
        return await read_page(request, "program_diff.html", diff_page, signature, a, b,
                               title=lambda data: f"{data['spec'].name}: {data['a']} → {data['b']}")

    async def program_version(request: Request, signature: str, version: str) -> Response:
        return await read_page(request, "program_version.html", version_page, signature, version,
                               title=lambda data: f"{data['spec'].name} {version}")

    async def program(request: Request, signature: str) -> Response:  # a signature's versions: its section
        viewer(request, "read")
        spec = spec_or_404(console_context(request), signature)
        return redirect(request, f"/ui/programs#p-{spec.name}")

    console_route(app, "GET", "/ui/programs", "read", programs)
    console_route(app, "GET", "/ui/programs/{signature}", "read", program)
    console_route(app, "GET", "/ui/programs/{signature}/diff", "read", program_diff)
    console_route(app, "GET", "/ui/programs/{signature}/{version}", "read", program_version)
