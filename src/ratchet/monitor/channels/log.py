"""Log channel: one structured (JSON) log line per alert on the ``ratchet.alerts`` logger."""

from __future__ import annotations

import json
import logging
from typing import ClassVar

from ratchet.monitor.alerts import Alert

__all__ = ["LogChannel"]

_LEVELS = {"info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR, "critical": logging.CRITICAL}


class LogChannel:
    name: ClassVar[str] = "log"

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or logging.getLogger("ratchet.alerts")

    def send(self, alert: Alert) -> None:
        self.logger.log(_LEVELS[alert.level], json.dumps({"alert": alert.to_dict()}, ensure_ascii=False, default=str))
