"""A cross-process lock on a file (``flock``): held until the block ends or the process dies.

Processes on one host that read-modify-write a shared file (the routing projection, a
dataset's versions) hold it around the whole read-decide-write, so the last writer is
always the one that read last. ``flock`` is released by the kernel when the holder dies,
so a crash never leaves a stale lock. Not re-entrant within one process.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ratchet.store.private import make_private_dir, open_private

__all__ = ["file_lock"]


@contextlib.contextmanager
def file_lock(path: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold an exclusive (or ``shared``) ``flock`` on ``path`` (created owner-only if missing), waiting for it."""
    make_private_dir(path.parent)
    fd = open_private(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
