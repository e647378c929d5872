"""What a deletion did: one :class:`DeletionStep` per place user data lives, gathered in a :class:`DeletionReport`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["STATUSES", "DeletionReport", "DeletionStep", "Status", "run_step"]

log = logging.getLogger(__name__)

Status = Literal["ok", "nothing", "failed"]
STATUSES: tuple[str, ...] = ("ok", "nothing", "failed")


@dataclass
class DeletionStep:
    """One step: ``ok`` (removed ``count`` items), ``nothing`` (none found) or ``failed`` (``error`` says why)."""

    step: str
    status: Status = "nothing"
    count: int = 0
    details: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0

    def removed(self, count: int, **details: Any) -> DeletionStep:
        """Record ``count`` removed items (status ``ok`` when any, else ``nothing``) and details; returns self."""
        self.count += count
        self.details.update(details)
        if self.status == "nothing" and self.count:
            self.status = "ok"
        return self

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"step": self.step, "status": self.status, "count": self.count, **self.details,
                               "seconds": round(self.seconds, 4)}
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass
class DeletionReport:
    """Every step of one user's deletion; ``status`` is ``failed`` when any step failed, else ``ok``."""

    user: str  # the keyed pseudonym (the raw user id is never kept); for a re-application, how many users
    deletion_id: str
    started_at: str
    steps: list[DeletionStep] = field(default_factory=list)
    seconds: float = 0.0
    users: int = 1  # how many users it removed at once (a re-application after a restore: every recorded one)

    @property
    def status(self) -> str:
        return "failed" if any(step.status == "failed" for step in self.steps) else "ok"

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def step(self, name: str) -> DeletionStep:
        """The step called ``name`` (KeyError if it did not run)."""
        for step in self.steps:
            if step.step == name:
                return step
        raise KeyError(name)

    def counts(self) -> dict[str, int]:
        """Step name → count (what the audit entry records)."""
        return {step.step: step.count for step in self.steps}

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "users": self.users, "deletion_id": self.deletion_id, "status": self.status,
                "started_at": self.started_at, "seconds": round(self.seconds, 3),
                "steps": [step.to_dict() for step in self.steps]}


def run_step(report: DeletionReport, name: str, work: Callable[[DeletionStep], Any]) -> DeletionStep:
    """Run ``work`` on a new step called ``name``; an exception marks it ``failed`` (the others still run)."""
    step = DeletionStep(name)
    report.steps.append(step)
    started = time.perf_counter()
    try:
        work(step)
    except Exception as exc:
        log.exception("user data deletion %s: step %s failed", report.deletion_id, name)
        step.status = "failed"
        step.error = f"{type(exc).__name__}: {exc}"[:500]
    finally:
        step.seconds = time.perf_counter() - started
    return step
