"""Slack channel: an incoming-webhook message with one attachment coloured by the alert's level."""

from __future__ import annotations

import contextlib
import json
from datetime import datetime
from typing import Any, ClassVar

from ratchet.monitor.alerts import Alert
from ratchet.monitor.channels._http import post_json

__all__ = ["COLORS", "SlackChannel", "slack_payload"]

COLORS = {"info": "good", "warning": "#daa038", "error": "danger", "critical": "danger"}
_SHORT_FIELD = 40  # values up to this many characters sit side by side


def slack_payload(alert: Alert) -> dict[str, Any]:
    """The webhook body: a text line for notifications plus an attachment with title, message and fields."""
    fields = []
    for name, value in alert.details.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
        fields.append({"title": name, "value": text, "short": len(text) <= _SHORT_FIELD})
    attachment: dict[str, Any] = {
        "color": COLORS[alert.level],
        "title": alert.title,
        "text": alert.message,
        "fields": fields,
        "footer": f"ratchet · {alert.level}",
        "fallback": f"[{alert.level.upper()}] {alert.title}: {alert.message}",
    }
    with contextlib.suppress(ValueError):
        attachment["ts"] = int(datetime.fromisoformat(alert.timestamp).timestamp())
    return {"text": f"[{alert.level.upper()}] {alert.title}", "attachments": [attachment]}


class SlackChannel:
    name: ClassVar[str] = "slack"

    def __init__(self, webhook_url: str, *, timeout_s: float = 10.0) -> None:
        self._url = webhook_url
        self.timeout_s = timeout_s

    def __repr__(self) -> str:  # the URL is a credential
        return f"SlackChannel(timeout_s={self.timeout_s})"

    def send(self, alert: Alert) -> None:
        post_json(self._url, slack_payload(alert), timeout_s=self.timeout_s, channel=self.name)
