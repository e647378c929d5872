"""Alerts: what is alerting now and what resolved recently, each with its playbook — the monitoring state the
dispatcher keeps (:func:`ratchet.monitor.alert_board.read_alert_board`, as ``ratchet status`` shows it) and the
playbooks of :mod:`ratchet.monitor.playbooks`.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from ratchet.console.access import viewer
from ratchet.console.context import console_context
from ratchet.console.render import page
from ratchet.monitor.alert_board import read_alert_board
from ratchet.monitor.playbooks import playbook_for

__all__ = ["add_routes"]


_CODE = re.compile(r"`([^`]+)`")


def code_spans(text: str) -> Markup:
    """Playbook text with its `commands` as ``<code>`` (everything else escaped)."""
    return Markup(_CODE.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))


def _with_playbooks(alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**a, "playbook": playbook_for(str(a.get("title") or ""))} for a in alerts]


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    async def alerts(request: Request) -> Response:
        user = viewer(request, "read")
        ctx = console_context(request)
        board = await asyncio.to_thread(read_alert_board, ctx.settings)
        return page(request, user, "alerts.html", title="Alerts", board=board, code=code_spans,
                    active=_with_playbooks(board.active), resolved=_with_playbooks(board.resolved))

    console_route(app, "GET", "/ui/alerts", "read", alerts)
