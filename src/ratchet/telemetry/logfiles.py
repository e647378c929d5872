"""The files of a telemetry directory: their names, their write order, their line format and appends.

Files in the telemetry directory::

    interactions.jsonl                                 the active file, appended to by every process
    interactions-20250101T120000-4242-0.jsonl.gz       rotated (UTC time, pid, counter), then gzipped
    .telemetry.lock                                    the flock that orders appends and rotations

Several processes may write the same directory: an append takes a SHARED ``flock`` on
``.telemetry.lock`` around open + one ``write(2)`` on an ``O_APPEND`` descriptor + close, so
appends never interleave and never block each other, while a rotation takes the EXCLUSIVE lock
(:mod:`ratchet.telemetry.rotation`). Every file and directory created here is owner-only
(records hold user text). Readers list the files once (:func:`iter_log_files`), then read each.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ratchet.store.private import make_private_dir, open_private

__all__ = ["ACTIVE_NAME", "LOCK_NAME", "append", "iter_log_files", "locked", "rotated_files", "serialize"]

ACTIVE_NAME = "interactions.jsonl"
LOCK_NAME = ".telemetry.lock"
_ROTATED = re.compile(r"^interactions-(\d{8}T\d{6})-(\d+)-(\d+)\.jsonl(\.gz)?$")


def iter_log_files(directory: Path) -> list[Path]:
    """The telemetry files of ``directory`` in write order: rotated (plain, ``.gz``) oldest first, then the active one.

    A file caught between compression's rename and the deletion of its plain copy is listed
    once (the ``.gz``). Readers should list once, then read each file.
    """
    directory = Path(directory)
    rotated = rotated_files(directory)
    gz_names = {p.name for p in rotated if p.name.endswith(".gz")}
    files = [p for p in rotated if (p.name + ".gz") not in gz_names]
    active = directory / ACTIVE_NAME
    if active.exists():
        files.append(active)
    return files


def rotated_files(directory: Path) -> list[Path]:
    """Every rotated file of ``directory``, oldest first (unlike :func:`iter_log_files`, both copies of one in
    the middle of compression)."""
    found = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    for entry in entries:
        match = _ROTATED.match(entry.name)
        if not match:
            continue
        try:
            mtime_ns = entry.stat().st_mtime_ns
        except OSError:  # deleted meanwhile
            continue
        found.append(((match.group(1), mtime_ns, entry.name), Path(entry.path)))
    return [path for _, path in sorted(found)]


def serialize(record: Any) -> bytes:
    """One record as one line: compact JSON, UTF-8, ending in a newline; ``TypeError`` unless it is a dict."""
    if not isinstance(record, dict):
        raise TypeError(f"a telemetry record must be a dict, got {type(record).__name__}")
    # Same line format as ratchet.store.jsonl.append_jsonl.
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str) + "\n").encode("utf-8")


@contextlib.contextmanager
def locked(directory: Path, operation: int) -> Iterator[None]:
    """Hold ``flock(operation)`` on the directory's lock file (recreating a removed directory)."""
    lock_path = directory / LOCK_NAME
    try:
        fd = open_private(lock_path, os.O_RDWR)
    except FileNotFoundError:
        make_private_dir(directory)
        fd = open_private(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def append(directory: Path, data: bytes) -> tuple[int, int, OSError | None]:
    """Append ``data`` with one ``write(2)`` under the shared lock: bytes written, file size, the error if any."""
    written = 0
    try:
        with locked(directory, fcntl.LOCK_SH):
            fd = open_private(directory / ACTIVE_NAME, os.O_WRONLY | os.O_APPEND)
            try:
                view = memoryview(data)
                while written < len(data):  # one call unless the disk fills up mid-write
                    written += os.write(fd, view[written:])
                return written, os.fstat(fd).st_size, None
            finally:
                os.close(fd)
    except OSError as exc:
        return written, 0, exc
