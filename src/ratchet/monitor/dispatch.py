"""Sending alerts: every channel, with retries and backoff; cooldowns, resolution and the state file.

For each check result the dispatcher

* sends a condition that is new, or whose level got worse, at once; one that stays active
  again only after ``monitor.cooldown_minutes`` (otherwise it is *suppressed*) — and an info
  condition (no runs yet, a long-running experiment) never again while it stays active;
* sends one "Resolved: <title>" (info) for an active condition, inside the check's scopes,
  that the check no longer finds, and forgets it;
* sends each one-time event (a rollback) once.

Every channel is tried ``monitor.retry_attempts`` times with exponential backoff
(``retry_backoff_s``, ×2 per attempt); channels are sent to in parallel and a failing one
never stops the others. A channel that exhausted its attempts gets a single attempt for the
rest of the dispatcher's life, so a dead webhook cannot stall a run. An alert counts as sent
when at least one channel delivered it; one that reached no channel is tried again next run.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.errors import DeliveryError
from ratchet.monitor.alerts import Alert, level_rank
from ratchet.monitor.channels.base import Channel
from ratchet.monitor.channels.factory import build_channels
from ratchet.monitor.results import CheckResult, in_scope
from ratchet.monitor.state import (
    STATE_FILENAME,
    MonitoringState,
    StateReset,
    iso,
    load_state,
    locked,
    read_state,
    save_state,
    to_epoch,
)

__all__ = ["EVENT_RETENTION_DAYS", "AlertDispatcher", "ChannelResult", "Delivery"]

log = logging.getLogger(__name__)

EVENT_RETENTION_DAYS = 90
"""Delivered one-time events are remembered this long (a rollback is never alerted twice within it)."""

_SUBJECT_KEYS = ("signature", "experiment_id", "arm", "version", "run_id", "check")


@dataclass(frozen=True)
class ChannelResult:
    """How one channel fared with one alert."""

    channel: str
    ok: bool
    attempts: int
    error: str | None = None
    seconds: float = 0.0

    def describe(self) -> str:
        if self.ok:
            return "sent" if self.attempts == 1 else f"sent (attempt {self.attempts})"
        return f"failed after {self.attempts} attempt{'s' if self.attempts != 1 else ''}: {self.error}"

    def to_dict(self) -> dict[str, Any]:
        return {"channel": self.channel, "ok": self.ok, "attempts": self.attempts, "error": self.error,
                "seconds": self.seconds}


@dataclass
class Delivery:
    """One alert the dispatcher handled: why (``action``) and, unless suppressed, each channel's outcome.

    Actions: ``new``, ``escalated``, ``repeat`` (cooldown over), ``resolved``, ``event``,
    ``suppressed`` (still active within its cooldown, or an event already delivered).
    """

    alert: Alert
    check: str
    action: str
    results: list[ChannelResult] = field(default_factory=list)
    note: str = ""

    @property
    def delivered(self) -> bool:
        return any(r.ok for r in self.results)

    @property
    def failed(self) -> list[ChannelResult]:
        return [r for r in self.results if not r.ok]

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "action": self.action, "alert": self.alert.to_dict(), "key": self.alert.key,
                "condition": self.alert.condition, "delivered": self.delivered, "note": self.note,
                "channels": [r.to_dict() for r in self.results]}


class AlertDispatcher:
    """Delivers check results' alerts to ``channels`` and keeps ``monitoring_state.json`` up to date."""

    def __init__(
        self,
        settings: Settings,
        channels: Sequence[Channel],
        state_path: Path | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.monitor = settings.monitor
        self.channels = list(channels)
        self.state_path = Path(state_path) if state_path is not None else settings.home_dir / STATE_FILENAME
        self._sleep = sleep
        self._down: set[str] = set()

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertDispatcher:
        """The configured channels (``build_channels``) and ``<home>/monitoring_state.json``."""
        return cls(settings, build_channels(settings))

    # -- reading ---------------------------------------------------------------------------------
    def state(self) -> MonitoringState:
        """The current state (empty when missing or unreadable; nothing is changed)."""
        return read_state(self.state_path)

    def last_run(self, check: str) -> float | None:
        """When ``check`` last ran (epoch seconds), per the state file."""
        return self.state().last_run(check)

    # -- sending ---------------------------------------------------------------------------------
    def send(self, alert: Alert) -> list[ChannelResult]:
        """Deliver one alert to every channel (in parallel, with retries); never raises."""
        if not self.channels:
            return []
        with ThreadPoolExecutor(max_workers=len(self.channels), thread_name_prefix="ratchet-alert") as pool:
            futures = [pool.submit(self._deliver, channel, alert) for channel in self.channels]
            return [future.result() for future in futures]

    def dispatch(self, results: Sequence[CheckResult], now: float | None = None) -> list[Delivery]:
        """Apply cooldowns and resolution to ``results``, send what is due, update the state file."""
        now = time.time() if now is None else now
        stamp = iso(now)
        deliveries: list[Delivery] = []
        with locked(self.state_path):
            state, reset = load_state(self.state_path)
            if reset is not None:
                deliveries.append(self._deliver_alert(state, _reset_alert(reset, stamp), "monitor", "event"))
            for result in results:
                deliveries.extend(self._apply(state, result, now, stamp))
                state.checks[result.name] = {"last_run": stamp, "alerts": len(result.found), "error": result.error,
                                             "seconds": result.seconds}
            cutoff = now - EVENT_RETENTION_DAYS * 86400
            state.events = {k: v for k, v in state.events.items() if (to_epoch(v) or 0.0) >= cutoff}
            state.last_check = stamp
            save_state(self.state_path, state)
        return deliveries

    # -- internals -------------------------------------------------------------------------------
    def _apply(self, state: MonitoringState, result: CheckResult, now: float, stamp: str) -> list[Delivery]:
        out: list[Delivery] = []
        cooldown_s = self.monitor.cooldown_minutes * 60
        current: dict[str, Alert] = {}
        for alert in result.alerts:
            current.setdefault(alert.key, alert)
        for key, alert in current.items():
            entry = state.active.get(key)
            if entry is None:
                entry = state.active[key] = {"check": result.name, "condition": alert.condition or key,
                                             "first_seen": stamp, "last_sent": None, "sent_level": None,
                                             "send_count": 0}
            entry.update(level=alert.level, title=alert.title, message=alert.message, details=alert.details,
                         last_seen=stamp)
            last_sent = to_epoch(entry.get("last_sent"))
            if last_sent is None:
                action = "new"
            elif level_rank(alert.level) > _rank(entry.get("sent_level")):
                action = "escalated"
            elif alert.level != "info" and now - last_sent >= cooldown_s:
                action = "repeat"
            else:
                note = ("active, info is sent once" if alert.level == "info"
                        else f"active, cooldown until {iso(last_sent + cooldown_s)}")
                out.append(Delivery(alert, result.name, "suppressed", note=note))
                continue
            delivery = self._deliver_alert(state, alert, result.name, action)
            if delivery.delivered:
                entry.update(last_sent=stamp, sent_level=alert.level, send_count=int(entry.get("send_count", 0)) + 1)
            out.append(delivery)
        for key, entry in list(state.active.items()):
            if key in current or entry.get("check") != result.name or not in_scope(entry["condition"], result.scopes):
                continue
            del state.active[key]
            if entry.get("last_sent") is None:
                continue  # nobody heard of it: nothing to resolve
            out.append(self._deliver_alert(state, _resolved_alert(entry, stamp), result.name, "resolved"))
        for alert in result.events:
            key = alert.key
            if key in state.events:
                out.append(Delivery(alert, result.name, "suppressed", note=f"already sent {state.events[key]}"))
                continue
            delivery = self._deliver_alert(state, alert, result.name, "event")
            if delivery.delivered:
                state.events[key] = stamp
            out.append(delivery)
        return out

    def _deliver_alert(self, state: MonitoringState, alert: Alert, check: str, action: str) -> Delivery:
        results = self.send(alert)
        delivery = Delivery(alert, check, action, results, note="" if self.channels else "no channels configured")
        for failed in delivery.failed:
            log.warning("alert %r: channel %s %s", alert.title, failed.channel, failed.describe())
        state.add_recent({**alert.to_dict(), "check": check, "action": action, "delivered": delivery.delivered,
                          "channels": {r.channel: r.describe() for r in results}})
        return delivery

    def _deliver(self, channel: Channel, alert: Alert) -> ChannelResult:
        name = getattr(channel, "name", type(channel).__name__)
        attempts = 1 if name in self._down else self.monitor.retry_attempts
        started = time.monotonic()
        error = ""
        for attempt in range(1, attempts + 1):
            try:
                channel.send(alert)
            except DeliveryError as exc:
                error = str(exc)
            except Exception as exc:  # a channel's bug or I/O error must not stop the others
                error = f"{type(exc).__name__}: {exc}"
            else:
                self._down.discard(name)
                return ChannelResult(name, True, attempt, seconds=round(time.monotonic() - started, 3))
            if attempt < attempts:
                self._sleep(self.monitor.retry_backoff_s * 2 ** (attempt - 1))
        self._down.add(name)
        return ChannelResult(name, False, attempts, error, round(time.monotonic() - started, 3))


def _resolved_alert(entry: dict[str, Any], stamp: str) -> Alert:
    details = entry.get("details") or {}
    subject = {k: details[k] for k in _SUBJECT_KEYS if k in details}
    title = entry.get("title", "alert")
    first = entry.get("first_seen")
    return Alert("info", f"Resolved: {title}", f"{title} is no longer present (alerting since {first})",
                 {**subject, "condition": entry["condition"], "previous_level": entry.get("level"),
                  "first_seen": first, "last_seen": entry.get("last_seen")},
                 timestamp=stamp, condition=f"{entry['condition']}/resolved")


def _reset_alert(reset: StateReset, stamp: str) -> Alert:
    return Alert("warning", "Monitoring State Reset",
                 f"{reset.path.name} was corrupted and has been reset; active alerts and cooldowns start afresh",
                 {"path": str(reset.path), "moved_to": str(reset.moved_to) if reset.moved_to else None,
                  "error": reset.error}, timestamp=stamp, condition="monitor/state_reset")


def _rank(level: Any) -> int:
    try:
        return level_rank(level)
    except ValueError:
        return -1
