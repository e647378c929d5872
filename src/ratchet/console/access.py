"""Who is looking at a console page, and whether they may: sessions, roles, CSRF, and the refusals.

Every page calls :func:`viewer` with the role it needs (``read`` to see, ``operator`` to act on rollouts,
``annotate`` for the queue). A browser without a valid session gets an anonymous one (its CSRF token protects the
login form); when keys are required, a page sends it to the login page; a key without the role gets a 403 page.
On an open loopback server (keys not required) the console acts as ``local`` with every role, as the API does.
A state-changing request must carry its session's CSRF token (``check_csrf``) and come from this origin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from fastapi import Request

from ratchet.auth.roles import ROLES, grants
from ratchet.console.context import ConsoleContext, console_context
from ratchet.console.session import COOKIE, Session
from ratchet.serve.auth import LOCAL, Principal

__all__ = ["ConsoleUser", "Forbidden", "LoginRequired", "PageNotFound", "check_csrf", "current_session", "viewer"]

UI = "/ui"


class LoginRequired(Exception):
    """The page needs a logged-in key; the handler redirects to the login page, then back to ``next_url``."""

    def __init__(self, next_url: str) -> None:
        super().__init__(next_url)
        self.next_url = next_url

    @property
    def location(self) -> str:
        return f"{UI}/login?next={quote(self.next_url, safe='/')}"


class Forbidden(Exception):
    """The key lacks the page's role, or a form came without its CSRF token: a 403 page saying which."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PageNotFound(LookupError):
    """A page for something that does not exist (an unknown experiment, version, task): a 404 page."""


@dataclass(frozen=True)
class ConsoleUser:
    """The principal a page acts for, its session and the CSRF token its forms carry."""

    principal: Principal
    session: Session
    csrf: str

    def can(self, role: str) -> bool:
        return grants(self.principal.roles, role)

    @property
    def roles(self) -> tuple[str, ...]:
        return tuple(r for r in ROLES if self.can(r))


def current_session(request: Request, ctx: ConsoleContext) -> Session:
    """The request's session; a new anonymous one (sent back as a cookie by the page) when it has none."""
    known: Session | None = getattr(request.state, "console_session", None)
    if known is not None:
        return known
    session = ctx.signer.read(request.cookies.get(COOKIE))
    if session is None:
        cookie, session = ctx.signer.issue(None)
        request.state.console_cookie = cookie
    request.state.console_session = session
    return session


def viewer(request: Request, role: str) -> ConsoleUser:
    """The user of a page that needs ``role``; raises :class:`LoginRequired` or :class:`Forbidden`."""
    ctx = console_context(request)
    session = current_session(request, ctx)
    principal: Principal | None = None
    if session.key_id is not None:
        principal = ctx.auth.principal_of_key_id(session.key_id, time.time())
    elif not ctx.auth.required:
        principal = LOCAL
    if principal is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(target if request.method == "GET" else UI)
    user = ConsoleUser(principal=principal, session=session, csrf=ctx.signer.csrf_token(session))
    request.state.console_user = user  # the 403 page shows the menu of what they may see
    if not user.can(role):
        raise Forbidden(f"the key '{principal.name}' does not hold the '{role}' role this page needs")
    return user


def check_csrf(request: Request, session: Session, token: str | None) -> None:
    """Refuse a state-changing request without this session's CSRF token or from another origin."""
    ctx = console_context(request)
    origin = request.headers.get("origin")
    if origin and origin != "null":
        host = request.headers.get("host", "")
        if urlsplit(origin).netloc != host:
            raise Forbidden("the form came from another site (Origin does not match)")
    if not ctx.signer.csrf_ok(session, token):
        raise Forbidden("the form's security token is missing or out of date: reload the page and try again")
