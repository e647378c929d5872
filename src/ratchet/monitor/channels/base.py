"""The alert channel interface: deliver one alert somewhere, or raise."""

from __future__ import annotations

from typing import ClassVar, Protocol

from ratchet.monitor.alerts import Alert

__all__ = ["Channel"]


class Channel(Protocol):
    name: ClassVar[str]

    def send(self, alert: Alert) -> None:
        """Deliver the alert; raise on failure (the dispatcher retries and reports)."""
        ...
