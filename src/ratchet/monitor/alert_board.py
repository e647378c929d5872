"""Alerts as operators read them: what is alerting now, what resolved recently, what was sent — from the
monitoring state file (``monitoring_state.json``), the one record the dispatcher keeps.

``active`` are the conditions present at their check's last run (worst level first); ``resolved`` the
"Resolved: …" notices among the last :data:`~ratchet.monitor.state.RECENT_LIMIT` alerts sent (newest first),
each with when its condition started and ended; ``recent`` every alert sent, newest first. The dashboard's
alert section and the console's Alerts page both read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ratchet.config import Settings
from ratchet.monitor.alerts import LEVELS
from ratchet.monitor.playbooks import RESOLVED_PREFIX
from ratchet.monitor.state import STATE_FILENAME, read_state, to_epoch

__all__ = ["AlertBoard", "read_alert_board"]


def _rank(level: Any) -> int:
    return LEVELS.index(level) if level in LEVELS else -1


@dataclass(frozen=True)
class AlertBoard:
    last_check: str | None
    active: list[dict[str, Any]] = field(default_factory=list)
    resolved: list[dict[str, Any]] = field(default_factory=list)
    recent: list[dict[str, Any]] = field(default_factory=list)


def read_alert_board(settings: Settings) -> AlertBoard:
    """The alerts of ``settings``' home (empty when the state file is missing or unreadable)."""
    state = read_state(settings.home_dir / STATE_FILENAME)
    active = [{"level": e.get("level"), "title": e.get("title"), "message": e.get("message"),
               "check": e.get("check"), "condition": e.get("condition"), "details": e.get("details") or {},
               "since": e.get("first_seen"), "last_seen": e.get("last_seen"), "last_sent": e.get("last_sent"),
               "send_count": e.get("send_count", 0)} for e in state.active.values()]
    active.sort(key=lambda a: (-_rank(a["level"]), to_epoch(a["since"]) or 0.0))
    recent = list(reversed(state.recent_alerts))
    resolved = []
    for entry in recent:
        title = str(entry.get("title") or "")
        if entry.get("action") != "resolved" and not title.startswith(RESOLVED_PREFIX):
            continue
        details = entry.get("details") or {}
        resolved.append({"title": title.removeprefix(RESOLVED_PREFIX), "message": entry.get("message"),
                         "level": details.get("previous_level"), "check": entry.get("check"),
                         "condition": details.get("condition"), "since": details.get("first_seen"),
                         "last_seen": details.get("last_seen"), "resolved_at": entry.get("timestamp"),
                         "details": details})
    return AlertBoard(last_check=state.last_check, active=active, resolved=resolved, recent=recent)
