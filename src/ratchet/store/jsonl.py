"""JSON Lines that survive bad lines: readers skip and count them, appends never tear."""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.store.private import make_private_dir, open_private

__all__ = ["JsonlReadStats", "append_jsonl", "iter_jsonl", "open_text_lines", "read_jsonl"]


@dataclass
class JsonlReadStats:
    """What a read saw: good records and the bad lines it skipped (with the first few reasons)."""

    lines: int = 0
    records: int = 0
    bad_lines: int = 0
    errors: list[str] = field(default_factory=list)

    def bad(self, where: str, reason: str) -> None:
        self.bad_lines += 1
        if len(self.errors) < 20:
            self.errors.append(f"{where}: {reason}")


def open_text_lines(path: Path) -> Iterator[bytes]:
    """Raw lines of a plain or ``.gz`` file."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        yield from fh


def iter_jsonl(path: Path, stats: JsonlReadStats | None = None) -> Iterator[dict[str, Any]]:
    """Yield each JSON object in ``path``; malformed, non-UTF-8 or non-object lines are skipped and counted."""
    stats = stats if stats is not None else JsonlReadStats()
    path = Path(path)
    try:
        for number, raw in enumerate(open_text_lines(path), start=1):
            stats.lines += 1
            if not raw.strip():
                continue
            where = f"{path.name}:{number}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                stats.bad(where, "invalid UTF-8")
                continue
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                stats.bad(where, f"invalid JSON ({exc.msg})")
                continue
            if not isinstance(value, dict):
                stats.bad(where, f"expected a JSON object, got {type(value).__name__}")
                continue
            stats.records += 1
            yield value
    except (EOFError, gzip.BadGzipFile, OSError) as exc:  # truncated .gz: keep what was read
        stats.bad(f"{path.name}", f"unreadable past line {stats.lines}: {exc}")


def read_jsonl(path: Path) -> tuple[list[dict[str, Any]], JsonlReadStats]:
    """All good records of ``path`` and the read statistics."""
    stats = JsonlReadStats()
    return list(iter_jsonl(path, stats)), stats


def append_jsonl(path: Path, records: Iterable[dict[str, Any]]) -> int:
    """Append records with one ``write(2)`` on an ``O_APPEND`` descriptor, so concurrent writers never interleave.

    A new file (and its missing directories) is created owner-only.
    """
    payload = b"".join(
        (json.dumps(r, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")
        for r in records
    )
    if not payload:
        return 0
    path = Path(path)
    make_private_dir(path.parent)
    fd = open_private(path, os.O_WRONLY | os.O_APPEND)
    try:
        view = memoryview(payload)
        while view:
            written = os.write(fd, view)
            view = view[written:]
    finally:
        os.close(fd)
    return len(payload)
