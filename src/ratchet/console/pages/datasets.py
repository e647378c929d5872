"""Datasets: each signature's training and golden versions with sizes, quality, gates and sources; a signature's
versions; the diff of two versions; a version's examples with their provenance, page by page.

All of it from the dataset store's own functions (``ratchet dataset list|load|diff``, ``ratchet data gate``,
``ratchet golden stats``), read without restoring an archived version: a page never changes the store.
"""

from __future__ import annotations

import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ratchet.console.access import PageNotFound
from ratchet.console.context import ConsoleContext
from ratchet.console.pages.common import (
    BadQuery,
    PageError,
    add_page_errors,
    field_order,
    query_choice,
    query_page,
    read_page,
    spec_or_404,
)
from ratchet.data.datasets import LATEST, SPLITS, VERSION_PATTERN, DatasetStore, VersionInfo
from ratchet.data.gates import GateReport
from ratchet.data.golden import GoldenStore, golden_stats
from ratchet.errors import DataError
from ratchet.programs.registry import ProgramSpec

__all__ = ["KINDS", "PAGE_SIZE", "add_routes"]

KINDS = ("training", "golden")
PAGE_SIZE = 25
INDEX_VERSIONS = 5  # versions per signature and kind on the index page (all of them on the signature's page)
GATED_VERSIONS = 30  # the newest versions whose gates a page runs


class ArchivedVersion(PageError):
    """A version packed into its archive: pages list it, but do not unpack it (a 409 page)."""

    status = 409
    title = "Archived version"


def _store(ctx: ConsoleContext, kind: str) -> DatasetStore:
    cls = GoldenStore if kind == "golden" else DatasetStore
    return cls(ctx.settings.home_dir, ctx.settings.data, registry=ctx.registry)


def _gates(store: DatasetStore, kind: str, signature: str, infos: list[VersionInfo], limit: int
           ) -> dict[str, GateReport | str]:
    """Gate reports of the newest ``limit`` live training versions (golden sets are curated, not gated)."""
    if kind != "training":
        return {}
    out: dict[str, GateReport | str] = {}
    for info in [i for i in infos if not i.archived][-limit:]:
        try:
            out[info.version] = store.gates(signature, info.version, restore=False)
        except DataError as exc:
            out[info.version] = str(exc)
    return out


def datasets_index(ctx: ConsoleContext) -> dict[str, Any]:
    rows = []
    for spec in ctx.registry:
        kinds = {}
        for kind in KINDS:
            store = _store(ctx, kind)
            infos = store.list_versions(spec.name)
            shown = infos[-INDEX_VERSIONS:]
            kinds[kind] = {"infos": list(reversed(shown)), "total": len(infos),
                           "gates": _gates(store, kind, spec.name, shown, INDEX_VERSIONS)}
        rows.append({"spec": spec, "kinds": kinds})
    return {"signatures": rows}


def signature_page(ctx: ConsoleContext, signature: str, kind: str) -> dict[str, Any]:
    spec = spec_or_404(ctx, signature)
    store = _store(ctx, kind)
    infos = store.list_versions(spec.name)
    latest = next((i for i in infos if i.latest), None)
    summary = gate = None
    if latest is not None and not latest.archived:
        try:
            summary = store.load(spec.name, latest.version, restore=False).summary()
        except DataError as exc:
            summary = {"error": str(exc)}
    gates = _gates(store, kind, spec.name, infos, GATED_VERSIONS)
    if latest is not None:
        gate = gates.get(latest.version)
    golden = golden_stats(store, spec) if isinstance(store, GoldenStore) and latest is not None else None
    return {"spec": spec, "kind": kind, "infos": list(reversed(infos)), "latest": latest, "summary": summary,
            "gates": gates, "gate": gate, "golden": golden}


def _version(spec: ProgramSpec, infos: list[VersionInfo], value: str, what: str, *, query: bool) -> VersionInfo:
    """The version ``value`` names (``latest`` resolved): a bad name is a 400 in a query, a 404 in a path."""
    if value == LATEST:
        found = next((i for i in infos if i.latest), None)
        if found is None:
            raise PageNotFound(f"'{spec.name}' has no {what} version yet")
        return found
    if not VERSION_PATTERN.match(value):
        message = f"'{value[:60]}' is not a dataset version name (vYYYYMMDD_HHMMSS or latest)"
        raise BadQuery(message) if query else PageNotFound(message)
    found = next((i for i in infos if i.version == value), None)
    if found is None:
        raise PageNotFound(f"'{spec.name}' has no {what} version '{value}'")
    if found.archived:
        raise ArchivedVersion(f"{spec.name} {value} is archived; restore it with `ratchet dataset load "
                              f"--signature {spec.name} --version {value}` to browse it here")
    return found


def diff_page(ctx: ConsoleContext, signature: str, kind: str, a: str | None, b: str | None) -> dict[str, Any]:
    """Version ``a`` → ``b`` (by default latest and its parent, else the version before it)."""
    spec = spec_or_404(ctx, signature)
    store = _store(ctx, kind)
    infos = store.list_versions(spec.name)
    if not infos:
        raise PageNotFound(f"'{spec.name}' has no {kind} dataset version yet")
    names = [i.version for i in infos]
    new = _version(spec, infos, b or LATEST, kind, query=True)
    if a is None:
        parent = new.metadata.get("parent")
        index = names.index(new.version)
        a = parent if parent in names else names[max(0, index - 1)]
    old = _version(spec, infos, a, kind, query=True)
    result = store.diff(spec.name, old.version, new.version, sample=10, restore=False)
    samples = result.examples_added + result.examples_removed + [c["new"] for c in result.examples_changed]
    return {"spec": spec, "kind": kind, "a": old.version, "b": new.version, "names": names, "diff": result,
            "columns": field_order(spec, [{k: v for k, v in s.items() if k != "_meta"} for s in samples])}


def examples_page(ctx: ConsoleContext, signature: str, version: str, kind: str, split: str | None,
                  number: int) -> dict[str, Any]:
    spec = spec_or_404(ctx, signature)
    store = _store(ctx, kind)
    info = _version(spec, store.list_versions(spec.name), version, kind, query=False)
    dataset = store.load(spec.name, info.version, split, restore=False)
    pages = max(1, math.ceil(len(dataset.records) / PAGE_SIZE))
    if number > pages:
        raise BadQuery(f"page {number} does not exist: {spec.name} {info.version} has {pages} page(s) of "
                       f"{PAGE_SIZE} examples{f' in its {split} split' if split else ''}")
    start = (number - 1) * PAGE_SIZE
    records = dataset.records[start:start + PAGE_SIZE]
    return {"spec": spec, "kind": kind, "info": info, "split": split, "page_number": number, "pages": pages,
            "total": len(dataset.records), "first": start + 1, "records": records, "splits": SPLITS,
            "columns": field_order(spec, [r.values for r in records])}


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    add_page_errors(app)

    def kind_of(request: Request) -> str:
        return query_choice(request, "kind", KINDS, "training") or "training"

    async def datasets(request: Request) -> Response:
        return await read_page(request, "datasets.html", datasets_index, title="Datasets")

    async def dataset(request: Request, signature: str) -> Response:
        kind = kind_of(request)
        label = "golden set" if kind == "golden" else "training data"
        return await read_page(request, "dataset.html", signature_page, signature, kind,
                               title=lambda data: f"{data['spec'].name}: {label}")

    async def dataset_diff(request: Request, signature: str) -> Response:
        kind = kind_of(request)
        a, b = request.query_params.get("a") or None, request.query_params.get("b") or None
        return await read_page(request, "dataset_diff.html", diff_page, signature, kind, a, b,
                               title=lambda data: f"{data['spec'].name}: {data['a']} → {data['b']}")

    async def dataset_examples(request: Request, signature: str, version: str) -> Response:
        kind = kind_of(request)
        split, number = query_choice(request, "split", SPLITS, None), query_page(request)
        return await read_page(request, "dataset_examples.html", examples_page, signature, version, kind, split,
                               number, title=lambda data: f"{data['spec'].name} {data['info'].version}: examples")

    console_route(app, "GET", "/ui/datasets", "read", datasets)
    console_route(app, "GET", "/ui/datasets/{signature}", "read", dataset)
    console_route(app, "GET", "/ui/datasets/{signature}/diff", "read", dataset_diff)
    console_route(app, "GET", "/ui/datasets/{signature}/{version}/examples", "read", dataset_examples)
