"""``ratchet audit list``: entries read back, filtered by day and action."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

from ratchet.audit.log import FILE_PATTERN, AuditLog

__all__ = ["read_entries"]


def read_entries(home: Path, *, since: date | None = None, action: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """Entries of ``home``'s audit log, oldest first: from day ``since`` (UTC) on, whose action is ``action`` or
    starts with ``action.`` (``experiment`` matches ``experiment.rollback``); the newest ``limit`` when given.
    Lines that do not parse are left out here (``verify_audit`` reports them)."""
    entries = [e for e in _entries(AuditLog(home), since) if _matches(e.get("action"), action)]
    return entries[-limit:] if limit else entries


def _entries(log: AuditLog, since: date | None) -> Iterator[dict[str, Any]]:
    for path in log.files():
        match = FILE_PATTERN.match(path.name)
        if since is not None and match and match.group(1) < since.isoformat():
            continue
        with open(path, "rb") as fh:
            for raw in fh:
                try:
                    entry = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    continue
                if isinstance(entry, dict) and (since is None or str(entry.get("at", ""))[:10] >= since.isoformat()):
                    yield entry


def _matches(name: object, prefix: str | None) -> bool:
    if prefix is None:
        return True
    prefix = prefix.rstrip(".")
    return isinstance(name, str) and (name == prefix or name.startswith(prefix + "."))
