"""Crash-safe file writes: temp file in the same directory, fsync, rename, fsync the directory."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from ratchet.store.private import PRIVATE_FILE, make_private_dir

__all__ = ["atomic_write_bytes", "atomic_write_json", "atomic_write_text", "fsync_dir"]


def fsync_dir(directory: Path) -> None:
    """Make a rename or new entry in ``directory`` durable."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _create_temp(path: Path, mode: int) -> tuple[int, str]:
    """A new ``.<name>.<random>.tmp`` file next to ``path``, created with ``mode`` (the umask applies)."""
    while True:
        name = str(path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"))
        try:
            return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode), name
        except FileExistsError:  # pragma: no cover - 32 random bits
            continue


def atomic_write_bytes(path: Path, data: bytes, *, mode: int = PRIVATE_FILE) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never a torn one.

    The new file gets ``mode`` (default owner-only ``0o600``) narrowed by the umask; missing
    parent directories are created owner-only.
    """
    path = Path(path)
    make_private_dir(path.parent)
    fd, tmp_name = _create_temp(path, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str, *, mode: int = PRIVATE_FILE) -> None:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    atomic_write_bytes(path, text.encode("utf-8"), mode=mode)


def atomic_write_json(path: Path, value: Any, *, indent: int | None = 2, mode: int = PRIVATE_FILE) -> None:
    """:func:`atomic_write_bytes` for a JSON document (keys kept in insertion order)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    atomic_write_text(path, text + "\n", mode=mode)
