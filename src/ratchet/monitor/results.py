"""What one check found: conditions present now, one-time events, and the scope it evaluated."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ratchet.monitor.alerts import Alert, level_rank

__all__ = ["CheckResult", "in_scope", "worst_level"]


def in_scope(condition: str, scopes: list[str]) -> bool:
    """Whether ``condition`` (a path like ``slo/latency_p95/sig``) is ``scope`` or lies under it, for any scope."""
    return any(condition == scope or condition.startswith(scope.rstrip("/") + "/") for scope in scopes)


def worst_level(alerts: list[Alert]) -> str | None:
    """The most severe level among ``alerts`` (None when there are none)."""
    return max((a.level for a in alerts), key=level_rank, default=None)


@dataclass
class CheckResult:
    """One check's findings.

    ``alerts`` are conditions present now: they stay active (re-sent after the cooldown) until a
    run of the same check no longer finds them, which sends one "Resolved" alert. ``scopes`` are
    the condition prefixes the check evaluated: only active alerts under them can be resolved
    (a dataset check of one signature leaves the others' alerts alone). ``events`` are one-time
    alerts (a rollback): sent once per condition, never resolved.
    """

    name: str
    alerts: list[Alert] = field(default_factory=list)
    events: list[Alert] = field(default_factory=list)
    scopes: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def found(self) -> list[Alert]:
        """Every alert the check raised (conditions and events)."""
        return [*self.alerts, *self.events]

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.name, "alerts": [a.to_dict() for a in self.alerts],
                "events": [a.to_dict() for a in self.events], "scopes": self.scopes, "error": self.error,
                "seconds": self.seconds, "summary": self.summary}
