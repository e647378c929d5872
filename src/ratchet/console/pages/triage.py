"""The weekly triage: a week's failure clusters (from phase 1's report) with their examples and sizes as a chart,
and what phase 2 imported (the weekly report), read from the same report files ``ratchet flywheel run`` writes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from ratchet.console.access import PageNotFound, viewer
from ratchet.console.context import console_context
from ratchet.console.render import page
from ratchet.errors import ConfigError, DataError

__all__ = ["add_routes", "report_weeks"]

BAR_WIDTH = 320


def report_weeks(reports_dir: Path) -> list[str]:
    """Weeks with a triage report, newest first."""
    if not reports_dir.is_dir():
        return []
    return sorted((p.name[len("triage_"):-len(".json")] for p in reports_dir.glob("triage_*.json")), reverse=True)


def _weekly(reports_dir: Path, week: Any) -> dict[str, Any] | None:
    from ratchet.flywheel.weekly import weekly_paths

    path = weekly_paths(reports_dir, week)[1]
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _bars(clusters: list[dict[str, Any]]) -> list[dict[str, Any]]:
    largest = max((c["size"] for c in clusters), default=1) or 1
    return [{"id": c["id"], "label": ", ".join(c["terms"][:3]) or "(no terms)", "size": c["size"],
             "status": c["status"], "width": max(2, round(BAR_WIDTH * c["size"] / largest))} for c in clusters]


def add_routes(app: FastAPI) -> None:
    from ratchet.console.routes import console_route

    async def triage(request: Request, week: str | None = None) -> Response:
        from ratchet.flywheel.triage import load_report  # scikit-learn comes with the flywheel: not at startup
        from ratchet.flywheel.week import parse_week

        user = viewer(request, "read")
        ctx = console_context(request)
        reports_dir = Path(ctx.settings.home_dir) / "reports"
        weeks = report_weeks(reports_dir)
        chosen = week or (weeks[0] if weeks else None)
        report = weekly = None
        error = None
        if chosen is not None:
            try:
                iso = parse_week(chosen)
            except ConfigError as exc:
                raise PageNotFound(str(exc)) from None
            try:
                report = await asyncio.to_thread(load_report, reports_dir, iso)
            except DataError as exc:
                error = str(exc)
            if report is None and error is None:
                raise PageNotFound(f"no triage report for {iso} (`ratchet flywheel run --week {iso}`)")
            weekly = await asyncio.to_thread(_weekly, reports_dir, iso)
        signatures = {name: {**sig, "bars": _bars(sig.get("clusters", []))}
                      for name, sig in ((report or {}).get("signatures") or {}).items()}
        return page(request, user, "triage.html", title="Triage", weeks=weeks, week=chosen, report=report,
                    signatures=signatures, weekly=weekly, error=error, bar_width=BAR_WIDTH)

    console_route(app, "GET", "/ui/triage", "read", triage)
