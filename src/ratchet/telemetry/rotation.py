"""Rotation, compression and retention of telemetry files: the active file renamed, then gzipped, then deleted.

A rotation takes the EXCLUSIVE lock on ``.telemetry.lock``, re-checks the active file's size,
renames it and releases: no append is in flight, so no record lands in a renamed file. A
rotated file keeps the active file's mode. Compression and retention only touch rotated files,
which nobody appends to; compressing a file holds an exclusive ``flock`` on that file
(non-blocking: busy means someone else is on it) and writes the owner-only ``.gz`` atomically
(temp file, fsync, rename) before deleting the plain file. Each function counts its work and
reports a failed file operation through the ``count`` and ``warn`` of the writer that calls it.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import itertools
import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from ratchet.store.atomic import fsync_dir
from ratchet.store.private import private_opener
from ratchet.telemetry.logfiles import ACTIVE_NAME, locked, rotated_files

__all__ = ["Count", "Warn", "compress_pending", "delete_expired", "rotate"]

_TEMP_MAX_AGE_S = 3600.0  # leftovers of a crashed compression
_rotation_counter = itertools.count()  # unique rotated names across writers of one process


class Count(Protocol):
    """Add ``n`` to the writer's counter ``key``."""

    def __call__(self, key: str, n: int = 1, /) -> None: ...


Warn = Callable[[str], None]
"""Log a warning (the writer limits how often)."""


def rotate(directory: Path, max_bytes: int, count: Count, warn: Warn) -> bool:
    """Rename the active file once it is past ``max_bytes``; True if this call rotated it."""
    active_path = directory / ACTIVE_NAME
    try:
        with locked(directory, fcntl.LOCK_EX):
            try:
                if os.stat(active_path).st_size <= max_bytes:
                    return False  # another writer rotated it first
            except FileNotFoundError:
                return False
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            target = directory / f"interactions-{stamp}-{os.getpid()}-{next(_rotation_counter)}.jsonl"
            os.rename(active_path, target)
        count("rotations")
        fsync_dir(directory)
    except OSError as exc:
        count("maintenance_errors")
        warn(f"telemetry rotation of {active_path} failed: {exc}")
        return False
    return True


def delete_expired(directory: Path, max_age_s: float, now: float, count: Count, warn: Warn) -> list[Path]:
    """Delete rotated files (plain, ``.gz``) last modified over ``max_age_s`` before ``now``; never the active file."""
    deleted = []
    for path in rotated_files(directory):
        try:
            if now - path.stat().st_mtime > max_age_s:
                path.unlink()
                deleted.append(path)
        except FileNotFoundError:  # another process got there first
            continue
        except OSError as exc:
            count("maintenance_errors")
            warn(f"telemetry retention could not delete {path.name}: {exc}")
    _remove_stale_temps(directory, now)
    if deleted:
        count("deleted", len(deleted))
        fsync_dir(directory)
    return deleted


def compress_pending(directory: Path, count: Count, warn: Warn) -> None:
    """Gzip every rotated file of ``directory`` that is not gzipped yet."""
    for path in rotated_files(directory):
        if not path.name.endswith(".gz"):
            _compress(directory, path, count, warn)


def _compress(directory: Path, path: Path, count: Count, warn: Warn) -> bool:
    """Gzip one rotated file to ``<name>.gz`` atomically, then delete it; False if someone else has it."""
    target = path.with_name(path.name + ".gz")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    tmp = path.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        st = os.fstat(fd)
        try:
            if os.stat(path).st_ino != st.st_ino:
                return False
        except FileNotFoundError:  # compressed and deleted while we waited
            return False
        with open(fd, "rb", closefd=False) as src, open(tmp, "wb", opener=private_opener) as raw:
            with gzip.GzipFile(filename=path.name, mode="wb", fileobj=raw, compresslevel=6,
                               mtime=int(st.st_mtime)) as gz:
                shutil.copyfileobj(src, gz, 1024 * 1024)
            raw.flush()
            os.fsync(raw.fileno())
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # retention ages the data, not the copy
        os.replace(tmp, target)
        fsync_dir(directory)
        path.unlink()
        fsync_dir(directory)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        count("maintenance_errors")
        warn(f"telemetry could not compress {path.name}: {exc}")
        return False
    finally:
        os.close(fd)
    count("compressed")
    return True


def _remove_stale_temps(directory: Path, now: float) -> None:
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        if entry.name.startswith(".interactions-") and entry.name.endswith(".tmp"):
            with contextlib.suppress(OSError):
                if now - entry.stat().st_mtime > _TEMP_MAX_AGE_S:
                    os.unlink(entry.path)
