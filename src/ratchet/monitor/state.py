"""The monitoring state file, ``<home>/monitoring_state.json``: what is alerting, what was sent, when checks ran.

Shape::

    {"format": 1,
     "last_check": "2026-11-25T12:00:00+00:00",
     "checks": {"orchestration": {"last_run": "…", "alerts": 1, "error": null, "seconds": 0.02}},
     "active": {"<alert key>": {"check": "slo", "condition": "slo/success_rate/classify_intent",
                                "level": "error", "sent_level": "error", "title": "…", "message": "…",
                                "details": {…}, "first_seen": "…", "last_seen": "…", "last_sent": "…",
                                "send_count": 1}},
     "events": {"<alert key>": "<sent at>"},
     "recent_alerts": [{"level", "title", "message", "timestamp", "details", "check", "action",
                        "channels": {"file": "sent", "slack": "failed after 3 attempts: …"}}, …]}

``active`` holds conditions that were present at their check's last run; ``events`` the
one-time alerts (rollbacks) already delivered; ``recent_alerts`` the last 50 alerts sent.
Writes are atomic and serialised by ``flock`` on ``monitoring_state.json.lock``. A file that
cannot be parsed is moved aside to ``monitoring_state.json.corrupt-<UTC timestamp>`` and reset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.store.atomic import atomic_write_json, fsync_dir
from ratchet.store.private import make_private_dir, open_private

__all__ = ["RECENT_LIMIT", "STATE_FILENAME", "MonitoringState", "StateReset", "iso", "load_state", "locked",
           "read_state", "save_state", "to_epoch"]

log = logging.getLogger(__name__)

STATE_FILENAME = "monitoring_state.json"
RECENT_LIMIT = 50
FORMAT = 1


@dataclass
class MonitoringState:
    """The parsed state file."""

    last_check: str | None = None
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, str] = field(default_factory=dict)
    recent_alerts: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "last_check": self.last_check, "checks": self.checks, "active": self.active,
                "events": self.events, "recent_alerts": self.recent_alerts[-RECENT_LIMIT:]}

    @classmethod
    def from_dict(cls, data: Any) -> MonitoringState:
        """Parse a state document; ValueError when it does not have the expected shape."""
        if not isinstance(data, dict):
            raise ValueError("the state file must hold a JSON object")
        state = cls(last_check=data.get("last_check"), checks=data.get("checks", {}), active=data.get("active", {}),
                    events=data.get("events", {}), recent_alerts=data.get("recent_alerts", []))
        if state.last_check is not None and not isinstance(state.last_check, str):
            raise ValueError("'last_check' must be a string or null")
        for name, kind in (("checks", dict), ("active", dict), ("events", dict), ("recent_alerts", list)):
            if not isinstance(getattr(state, name), kind):
                raise ValueError(f"'{name}' must be a JSON {'object' if kind is dict else 'array'}")
        for key, entry in state.active.items():
            if not isinstance(entry, dict) or not isinstance(entry.get("condition"), str):
                raise ValueError(f"active alert {key!r} must be an object with a 'condition'")
        return state

    def last_run(self, check: str) -> float | None:
        """When ``check`` last ran (epoch seconds)."""
        entry = self.checks.get(check)
        return to_epoch(entry.get("last_run")) if isinstance(entry, dict) else None

    def add_recent(self, entry: dict[str, Any]) -> None:
        self.recent_alerts.append(entry)
        del self.recent_alerts[:-RECENT_LIMIT]


def iso(epoch: float) -> str:
    """The state file's time format: ISO 8601 in UTC, to the second."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def to_epoch(stamp: Any) -> float | None:
    """Epoch seconds of an ISO 8601 time (UTC when it has no zone); None when it is not one."""
    if not isinstance(stamp, str):
        return None
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class StateReset:
    """A corrupted state file that was set aside."""

    path: Path
    moved_to: Path | None
    error: str


def read_state(path: Path) -> MonitoringState:
    """The state for reading only (dashboards): an empty state when the file is missing or unreadable."""
    try:
        return MonitoringState.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return MonitoringState()


def load_state(path: Path) -> tuple[MonitoringState, StateReset | None]:
    """The state for updating (hold ``locked(path)``); a corrupted file is moved aside and an empty state returned."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return MonitoringState(), None
    try:
        return MonitoringState.from_dict(json.loads(raw.decode("utf-8"))), None
    except (UnicodeDecodeError, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    moved: Path | None = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while moved is not None and moved.exists():  # corrupted twice within a second: keep both
        moved = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
        n += 1
    try:
        os.replace(path, moved)
        fsync_dir(path.parent)
    except OSError as exc:
        log.error("monitoring state %s is corrupted and could not be moved aside: %s", path, exc)
        moved = None
    log.warning("monitoring state %s was corrupted (%s); moved to %s and reset", path, error, moved)
    return MonitoringState(), StateReset(path=path, moved_to=moved, error=error)


def save_state(path: Path, state: MonitoringState) -> None:
    atomic_write_json(Path(path), state.to_dict())


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise read-modify-write of the state file across processes (released if the process dies)."""
    path = Path(path)
    make_private_dir(path.parent)
    fd = open_private(path.with_name(f"{path.name}.lock"), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
