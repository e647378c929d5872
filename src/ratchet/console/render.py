"""Rendering console pages: one Jinja2 environment over the package's templates, autoescaped, and the headers every
console response carries (a strict Content-Security-Policy: nothing but this origin's own files, no inline script).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ratchet.console.access import ConsoleUser
from ratchet.console.session import COOKIE
from ratchet.version import __version__

__all__ = ["NAV", "SECURITY_HEADERS", "page", "redirect", "secure"]

SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}

NAV: tuple[tuple[str, str, str], ...] = (  # (path, label, role needed)
    ("/ui", "Overview", "read"),
    ("/ui/experiments", "Experiments", "read"),
    ("/ui/programs", "Programs", "read"),
    ("/ui/datasets", "Datasets", "read"),
    ("/ui/annotate", "Annotate", "annotate"),
    ("/ui/triage", "Triage", "read"),
    ("/ui/alerts", "Alerts", "read"),
)


def _when(value: Any) -> str:
    """An epoch or ISO time as ``YYYY-MM-DD HH:MM UTC``; ``–`` when missing."""
    if value in (None, ""):
        return "–"
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC).strftime("%Y-%m-%d %H:%M UTC")
    return str(value).replace("T", " ")[:16] + " UTC" if "T" in str(value) else str(value)


def _ago(value: Any) -> str:
    """How long ago an epoch time was, roughly (``3 min ago``)."""
    if not isinstance(value, int | float):
        return "–"
    seconds = max(0.0, time.time() - float(value))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def _pct(value: Any, digits: int = 1) -> str:
    return "–" if value is None else f"{float(value) * 100:.{digits}f} %"


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{float(value):.{digits}g}" if abs(float(value)) >= 1000 else f"{float(value):.{digits}f}".rstrip(
        "0").rstrip(".") or "0"


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("ratchet.console", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(when=_when, ago=_ago, pct=_pct, num=_num, pretty=_pretty)
    env.globals["version"] = __version__
    return env


def secure(response: Response, request: Request | None = None) -> Response:
    """Add the console's security headers, and the new session cookie when the request was given one."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    cookie = getattr(request.state, "console_cookie", None) if request is not None else None
    if cookie:
        set_session_cookie(response, request, cookie)
    return response


def set_session_cookie(response: Response, request: Request, value: str, *, max_age: int | None = None) -> None:
    """The session cookie: HttpOnly, SameSite=Strict, path /ui, Secure when the request came over HTTPS."""
    response.set_cookie(COOKIE, value, max_age=max_age, path="/ui", httponly=True, samesite="strict",
                        secure=request.url.scheme == "https")


def page(request: Request, user: ConsoleUser | None, template: str, *, title: str, status: int = 200,
         **context: Any) -> HTMLResponse:
    """Render ``template`` as a full page for ``user`` (None on the login page)."""
    nav = [(path, label) for path, label, role in NAV if user is not None and user.can(role)]
    html = environment().get_template(template).render(
        request=request, user=user, title=title, nav=nav, path=request.url.path, csrf=user.csrf if user else None,
        **context)
    return secure(HTMLResponse(html, status_code=status), request)  # type: ignore[return-value]


def redirect(request: Request, location: str) -> Response:
    """A 303 See Other to ``location`` (after a form), with the console's headers."""
    return secure(RedirectResponse(location, status_code=303), request)


def svg(markup: str) -> Markup:
    """Markup the console built itself (charts), trusted by the templates."""
    return Markup(markup)
