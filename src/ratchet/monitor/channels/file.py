"""File channel: one JSON file per alert in the alerts directory (written atomically)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import ClassVar

from ratchet.monitor.alerts import Alert
from ratchet.store.atomic import atomic_write_json

__all__ = ["FileChannel"]


class FileChannel:
    name: ClassVar[str] = "file"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def path_for(self, alert: Alert) -> Path:
        try:
            stamp = datetime.fromisoformat(alert.timestamp).strftime("%Y%m%d_%H%M%S")
        except ValueError:
            stamp = "unknown"
        return self.directory / f"alert_{alert.level}_{stamp}_{alert.key[:8]}.json"

    def send(self, alert: Alert) -> None:
        atomic_write_json(self.path_for(alert), alert.to_dict())
