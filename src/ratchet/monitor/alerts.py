"""Alerts in seed 001's JSON shape::

    {"level": "warning", "title": "A/B Test Rolled Back",
     "message": "Experiment extract_reqs_v2 was rolled back",
     "timestamp": "2025-11-04T12:00:00", "details": {...}}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ratchet.hashing import canonical_json, sha256_hex

__all__ = ["LEVELS", "Alert", "level_rank"]

LEVELS = ("info", "warning", "error", "critical")


def level_rank(level: str) -> int:
    """0 for info … 3 for critical (an exit code follows the worst level)."""
    return LEVELS.index(level)


@dataclass
class Alert:
    """One alert: what happened, how bad, and the numbers behind it."""

    level: str
    title: str
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))
    condition: str | None = field(default=None, compare=False)
    """What the alert is about, as a path (``"slo/success_rate/classify_intent"``): checks set it so that
    cooldowns and resolution follow the condition, not the wording. Not part of the JSON shape."""

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ValueError(f"alert level must be one of {', '.join(LEVELS)}, got {self.level!r}")

    @property
    def key(self) -> str:
        """What makes two alerts "the same condition" (for cooldowns): the condition if set, else title and subject."""
        if self.condition is not None:
            return sha256_hex(canonical_json({"condition": self.condition}))[:16]
        subject = {k: self.details.get(k) for k in ("experiment_id", "signature", "check", "run_id")
                   if k in self.details}
        return sha256_hex(canonical_json({"title": self.title, "subject": subject}))[:16]

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "title": self.title, "message": self.message, "timestamp": self.timestamp,
                "details": self.details}
