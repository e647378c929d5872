"""Generic webhook channel: POST the alert's JSON (seed 001's shape) to a URL."""

from __future__ import annotations

from typing import ClassVar

from ratchet.monitor.alerts import Alert
from ratchet.monitor.channels._http import post_json

__all__ = ["WebhookChannel"]


class WebhookChannel:
    name: ClassVar[str] = "webhook"

    def __init__(self, url: str, *, timeout_s: float = 10.0) -> None:
        self._url = url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # the URL may carry a token
        return f"WebhookChannel(timeout_s={self.timeout_s})"

    def send(self, alert: Alert) -> None:
        post_json(self._url, alert.to_dict(), timeout_s=self.timeout_s, channel=self.name)
