"""The controller's last trigger evaluation, as a file the dashboard reads: ``<home>/metrics/triggers.json``.

The supervising controller (:mod:`ratchet.loop.supervisor`) writes it each time it evaluates the
live triggers; ``ratchet status`` shows each signature's verdict and the cycles started. Numbers
and reasons only, no user text.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from ratchet.store.atomic import atomic_write_json

__all__ = ["SNAPSHOT_FILENAME", "read_trigger_snapshot", "write_trigger_snapshot"]

log = logging.getLogger(__name__)

SNAPSHOT_FILENAME = "triggers.json"


def write_trigger_snapshot(home: Path, verdicts: dict[str, dict[str, Any]], launched: dict[str, str],
                           at: float) -> None:
    """Record an evaluation (and the cycles it started); a write error is only logged."""
    data = {"evaluated_at": at, "signatures": verdicts, "launched": launched}
    try:
        atomic_write_json(Path(home) / "metrics" / SNAPSHOT_FILENAME, data)
    except OSError as exc:
        log.warning("cannot write the trigger snapshot: %s", exc)


def read_trigger_snapshot(home: Path) -> dict[str, Any] | None:
    """The last evaluation, or None when none was written (no controller ran) or it is unreadable."""
    try:
        data = json.loads((Path(home) / "metrics" / SNAPSHOT_FILENAME).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
