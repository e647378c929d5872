"""The audit log of a home: daily JSON Lines files under ``<home>/audit/``, appended under a lock.

::

    <home>/audit/audit-2025-06-01.jsonl   one entry per line (see :mod:`ratchet.audit.entry`)
    <home>/audit/audit-2025-06-02.jsonl   its first entry chains to the last of the day before
    <home>/audit/head.json                the newest entry's seq and hash (so a cut-off end is seen)
    <home>/audit/.lock                    the cross-process lock writers hold

Every append happens under an exclusive ``flock`` (processes of one host, like every writer of a
home): read the newest entry, build the next one from it, write it with one ``write(2)``, fsync,
then rewrite ``head.json`` atomically. Files and the directory are owner-only. Nothing in Ratchet
rewrites or deletes these files: ``ratchet cleanup`` leaves them alone.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.audit.entry import GENESIS, build_entry
from ratchet.store.atomic import atomic_write_bytes, atomic_write_json, fsync_dir
from ratchet.store.filelock import file_lock
from ratchet.store.private import make_private_dir, open_private

__all__ = ["AUDIT_DIRNAME", "FILE_PATTERN", "HEAD_FILENAME", "AuditLog"]

AUDIT_DIRNAME = "audit"
HEAD_FILENAME = "head.json"
FILE_PATTERN = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
_TAIL_BYTES = 65536


class AuditLog:
    """Appending to, and listing the files of, one home's audit log."""

    def __init__(self, home: Path) -> None:
        self.directory = Path(home) / AUDIT_DIRNAME
        self.head_path = self.directory / HEAD_FILENAME

    def files(self) -> list[Path]:
        """The daily files, oldest first (their names sort by day)."""
        if not self.directory.is_dir():
            return []
        return sorted(p for p in self.directory.iterdir() if FILE_PATTERN.match(p.name) and p.is_file())

    def read_head(self) -> dict[str, Any] | None:
        """What ``head.json`` records (None when it is missing); ValueError when it is unreadable."""
        try:
            data = json.loads(self.head_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"{self.head_path.name} is unreadable: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("seq"), int) or not isinstance(data.get("hash"), str):
            raise ValueError(f"{self.head_path.name} does not hold a seq and a hash")
        return data

    def append(self, action: str, *, actor: str, source: str, target: str | None = None, outcome: str = "ok",
               reason: str | None = None, client: str | None = None,
               details: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Add one entry (fsync'd before this returns) and return it."""
        make_private_dir(self.directory)
        with file_lock(self.directory / ".lock"):
            seq, prev_hash, newest, torn = self._last()
            ts = round(time.time(), 6)
            entry = build_entry(seq=seq + 1, prev_hash=prev_hash, ts=ts, actor=actor, action=action, target=target,
                                outcome=outcome, reason=reason, source=source, client=client, details=details)
            day = datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")
            path = self.directory / f"audit-{day}.jsonl"
            if newest is not None and newest.name > path.name:  # the clock went back: never write behind the newest
                path = newest
            line = json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n"  # in field order; hashed sorted
            data = (b"\n" if torn and path == newest else b"") + line.encode("utf-8")
            created = not path.exists()
            fd = open_private(path, os.O_WRONLY | os.O_APPEND)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.directory)
            atomic_write_json(self.head_path, {"seq": entry["seq"], "hash": entry["hash"], "file": path.name,
                                               "at": entry["at"]})
        return entry

    def snapshot(self, target: Path) -> Path:
        """Copy the daily files and ``head.json`` to ``target`` (created owner-only) under the writers' lock, so the
        copy is one consistent state of the log (a backup's); returns ``target``."""
        make_private_dir(target)
        if not self.directory.is_dir():
            return target
        with file_lock(self.directory / ".lock", shared=True):
            for path in [*self.files(), self.head_path]:
                if path.is_file():
                    atomic_write_bytes(target / path.name, path.read_bytes())
        return target

    def _last(self) -> tuple[int, str, Path | None, bool]:
        """(seq, hash) of the newest entry that parses, the newest file, and whether that file ends in a torn line.

        An edited entry still counts (the next one chains to its recorded hash, so ``verify`` reports the edit
        once); a torn or garbled line does not.
        """
        files = self.files()
        newest = files[-1] if files else None
        torn = False
        for path in reversed(files):
            tail = _tail(path)
            if path == newest:
                torn = bool(tail) and not tail.endswith(b"\n")
            for raw in reversed(tail.splitlines()):
                entry = _parsed(raw)
                if entry is not None:
                    return entry["seq"], entry["hash"], newest, torn
            if len(tail) == _TAIL_BYTES:  # nothing intact in the last 64 KiB: look at the whole file
                for raw in reversed(path.read_bytes().splitlines()):
                    entry = _parsed(raw)
                    if entry is not None:
                        return entry["seq"], entry["hash"], newest, torn
        return 0, GENESIS, newest, torn


def _tail(path: Path) -> bytes:
    with open(path, "rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        fh.seek(max(0, size - _TAIL_BYTES))
        return fh.read()


def _parsed(raw: bytes) -> dict[str, Any] | None:
    """The entry on ``raw`` if it parses and has a seq and a hash, else None."""
    try:
        entry = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(entry, dict) or not isinstance(entry.get("seq"), int) or not isinstance(entry.get("hash"), str):
        return None
    return entry
