"""The annotator's screen: one task at a time under a lease, its context and nearest labelled examples, the
signature's labels as buttons, a keyboard shortcut for every action, progress and agreement.

The annotator is the key's name (``local`` on an open loopback server); answers go through the same
``ratchet.annotate.submit`` as ``ratchet annotate submit`` and are audited as ``annotation.submit``.
"""

from __future__ import annotations

import asyncio
import string
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ratchet.annotate import (
    AnnotationError,
    QueueStats,
    TaskView,
    UnknownTaskError,
    get_task,
    next_view,
    parse_assignments,
    stats,
    submit,
    view_of,
)
from ratchet.audit import audited
from ratchet.console.access import ConsoleUser, PageNotFound, check_csrf, viewer
from ratchet.console.context import ConsoleContext, console_context
from ratchet.console.render import page, redirect
from ratchet.errors import RatchetError

__all__ = ["SHORTCUTS", "add_routes"]

SHORTCUTS = "1234567890" + string.ascii_lowercase.replace("a", "").replace("r", "").replace("s", "")
"""Keys for label buttons, in order (a, r and s are accept, reject and skip)."""
LEASE_S = 900.0
_SET = "set:"


def _progress(queue: QueueStats, annotator: str, signature: str | None) -> dict[str, Any]:
    mine = queue.annotators.get(annotator, {})
    backlog = [b for b in queue.backlog if signature in (None, b.signature)]
    agreement = [g for g in queue.agreement if signature in (None, g.signature)]
    return {"answered": sum(mine.values()), "kinds": mine, "waiting": sum(b.open + b.leased for b in backlog),
            "done": sum(b.done for b in backlog), "agreement": agreement}


def _render(request: Request, user: ConsoleUser, ctx: ConsoleContext, view: TaskView | None, *,
            signature: str | None, notice: str | None = None, error: str | None = None, status: int = 200
            ) -> Response:
    queue = stats(ctx.db)
    labels = []
    if view is not None:
        keys = iter(SHORTCUTS)
        labels = [(name, [(choice, next(keys, None)) for choice in choices]) for name, choices in view.labels.items()]
    free = [] if view is None or view.task.signature not in ctx.registry else [
        f for f in ctx.registry.get(view.task.signature).schema.outputs if not f.choices]
    return page(request, user, "annotate.html", title="Annotate", status=status, view=view, labels=labels,
                free_fields=free, progress=_progress(queue, user.principal.name, signature), signature=signature,
                signatures=ctx.registry.names(), notice=notice, error=error)


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    async def screen(request: Request, signature: str | None = None, done: str | None = None) -> Response:
        user = viewer(request, "annotate")
        ctx = console_context(request)
        if signature is not None and signature not in ctx.registry:
            raise PageNotFound(f"no program '{signature}' is registered")
        view = await asyncio.to_thread(next_view, ctx.settings, ctx.registry, ctx.db, annotator=user.principal.name,
                                       signature=signature or None, lease_s=LEASE_S)
        notice = f"{done} recorded" if done in ("accept", "correct", "reject", "skip") else None
        return _render(request, user, ctx, view, signature=signature, notice=notice)

    async def answer(request: Request, task_id: str) -> Response:
        user = viewer(request, "annotate")
        ctx = console_context(request)
        form = await request.form()
        check_csrf(request, user.session, str(form.get("csrf_token") or ""))
        signature = str(form.get("signature") or "") or None
        try:
            task = get_task(ctx.db, task_id)
        except UnknownTaskError as exc:
            raise PageNotFound(str(exc)) from None
        action = str(form.get("action") or "")
        pairs = [f"{k[len(_SET):]}={v}" for k, v in form.multi_items() if k.startswith(_SET) and str(v).strip()]
        who = user.principal.name

        def record() -> str:
            with audited(ctx.settings, "annotation.submit", target=task_id, actor=user.principal.actor,
                         source="http") as note:
                values = None
                if action not in ("accept", "skip", "reject"):
                    if not pairs:
                        raise AnnotationError("choose a label, or accept, reject or skip")
                    values = parse_assignments(ctx.registry.get(task.signature).schema, pairs)
                given = submit(ctx.db, ctx.registry, task_id, who, set_values=values, accept=action == "accept",
                               reject=action == "reject", skip=action == "skip",
                               reason=str(form.get("reason") or "") or None)
                note.details.update({"kind": given.kind, "fields": sorted(values or {}), "annotator": who})
                return given.kind

        try:
            kind = await asyncio.to_thread(record)
        except RatchetError as exc:
            view = await asyncio.to_thread(view_of, ctx.settings, ctx.registry, task, who)
            return _render(request, user, ctx, view if task.leased_to(who) else None, signature=signature,
                           error=str(exc), status=409 if isinstance(exc, AnnotationError) else 422)
        suffix = f"&signature={signature}" if signature else ""
        return redirect(request, f"/ui/annotate?done={kind}{suffix}")

    console_route(app, "GET", "/ui/annotate", "annotate", screen)
    console_route(app, "POST", "/ui/annotate/{task_id}", "annotate", answer)
