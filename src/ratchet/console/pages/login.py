"""Logging in with an API key (a new session bound to the key, audited) and logging out."""

from __future__ import annotations

import asyncio

from fastapi import FastAPI, Form, Request
from fastapi.responses import Response

from ratchet.audit import audit
from ratchet.auth.roles import PUBLIC, grants
from ratchet.console.access import UI, check_csrf, current_session
from ratchet.console.context import LOGIN_BURST, LOGINS_PER_MINUTE, console_context
from ratchet.console.render import page, redirect, set_session_cookie
from ratchet.serve.auth import Refusal

__all__ = ["CONSOLE_ROLES", "add_login_routes", "safe_next"]

CONSOLE_ROLES = ("read", "annotate")
"""A key that grants neither (only ``predict`` or ``feedback``) has no console page to see."""


def safe_next(value: str | None) -> str:
    """Where to go after logging in: a console path, never another site."""
    if value and value.startswith(UI) and not value.startswith("//") and "\\" not in value:
        return value
    return UI


def add_login_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    async def login_form(request: Request, next: str | None = None) -> Response:
        ctx = console_context(request)
        session = current_session(request, ctx)
        return page(request, None, "login.html", title="Log in", next=safe_next(next),
                    login_csrf=ctx.signer.csrf_token(session), keys_required=ctx.auth.required, error=None)

    async def login(request: Request, key: str = Form("", max_length=200), csrf_token: str = Form(""),
                    next: str = Form(UI, max_length=2000)) -> Response:
        ctx = console_context(request)
        session = current_session(request, ctx)
        client = request.client.host if request.client else "?"

        def again(message: str, status: int) -> Response:
            fresh = current_session(request, ctx)
            return page(request, None, "login.html", title="Log in", status=status, next=safe_next(next),
                        login_csrf=ctx.signer.csrf_token(fresh), keys_required=ctx.auth.required, error=message)

        wait = ctx.logins.take(f"login:{client}", LOGINS_PER_MINUTE / 60.0, LOGIN_BURST)
        if wait > 0:
            response = again(f"too many attempts: try again in {int(wait) + 1} s", 429)
            response.headers["Retry-After"] = str(int(wait) + 1)
            return response
        check_csrf(request, session, csrf_token)
        try:
            principal = await asyncio.to_thread(ctx.auth.principal, key.strip() or None)
            if principal.key_id is not None and not any(grants(principal.roles, r) for r in CONSOLE_ROLES):
                raise Refusal(403, "role", "this key holds no console role (read, operator, annotate or admin)",
                              principal.key_id)
        except Refusal as refusal:
            await asyncio.to_thread(ctx.auth.refused, refusal, client=client, path=request.url.path, role="read")
            return again(str(refusal), refusal.status)
        cookie, _ = ctx.signer.issue(principal.key_id)  # a new session id: none chosen before login survives it
        await asyncio.to_thread(audit, ctx.settings, "console.login", target=UI, actor=principal.actor,
                                source="http", client=client, details={"roles": list(principal.roles)})
        target = safe_next(next)
        if target == UI and not grants(principal.roles, "read"):  # an annotator's home is the queue
            target = f"{UI}/annotate"
        response = redirect(request, target)
        set_session_cookie(response, request, cookie)
        return response

    async def logout(request: Request, csrf_token: str = Form("")) -> Response:
        ctx = console_context(request)
        session = current_session(request, ctx)
        check_csrf(request, session, csrf_token)
        if session.key_id is not None:
            await asyncio.to_thread(audit, ctx.settings, "console.logout", target=UI, actor=f"key:{session.key_id}",
                                    source="http", client=request.client.host if request.client else None)
        cookie, _ = ctx.signer.issue(None)
        response = redirect(request, f"{UI}/login")
        set_session_cookie(response, request, cookie)
        return response

    console_route(app, "GET", "/ui/login", PUBLIC, login_form)
    console_route(app, "POST", "/ui/login", PUBLIC, login)
    console_route(app, "POST", "/ui/logout", PUBLIC, logout)
