"""SQLite databases for restores: the database built from a backup's rows put in place of the target.

The restored file is renamed over the target, dropping a stale ``-wal``, ``-shm`` or
``-journal`` that SQLite would otherwise replay onto it. Backups never carry a database file:
only rows (:mod:`ratchet.ops.rowfiles`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path

from ratchet.store.atomic import fsync_dir
from ratchet.store.private import create_private, make_private_dir

__all__ = ["place_file"]


def place_file(staged: Path, target: Path) -> None:
    """Replace ``target`` with ``staged`` (and drop a stale WAL that would otherwise be replayed onto it)."""
    make_private_dir(target.parent)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.rename(staged, tmp)
    except OSError:  # another file system
        create_private(tmp)  # copyfile keeps the mode of a file it overwrites
        shutil.copyfile(staged, tmp)
    for suffix in ("-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{target}{suffix}")
    os.replace(tmp, target)
    fsync_dir(target.parent)
