"""SQLite databases for backups: an online snapshot, an integrity check and the restored file put in place.

Backing up copies the state database with SQLite's online backup API, so the snapshot is
consistent even while serving processes write (WAL), and stores it as one self-contained
file (journal mode ``DELETE``) that passed ``PRAGMA quick_check``. Restoring checks the staged
copy the same way, then renames it over the target, dropping a stale ``-wal``, ``-shm`` or
``-journal`` that SQLite would otherwise replay onto it. The PostgreSQL counterpart is
:mod:`ratchet.ops.pgtools`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import uuid
from pathlib import Path
from urllib.parse import quote

from ratchet.errors import BackupError
from ratchet.store.atomic import fsync_dir
from ratchet.store.private import create_private, make_private_dir

__all__ = ["place_file", "quick_check", "sqlite_snapshot"]


def sqlite_snapshot(source: Path, target: Path) -> None:
    """SQLite's online backup API: one consistent snapshot, even while other processes write (WAL)."""
    try:
        src = sqlite3.connect(f"file:{quote(str(source))}?mode=rw", uri=True, timeout=30)
        try:
            create_private(target)  # archived with its mode, and restored with it
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode = DELETE")  # one self-contained file, no -wal to carry along
                quick_check(dst, source)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source}: cannot snapshot the SQLite database: {exc}") from None


def quick_check(conn: sqlite3.Connection, where: Path) -> None:
    """Run ``PRAGMA quick_check`` on ``conn``; ``BackupError`` naming ``where`` unless the answer is ok."""
    result = conn.execute("PRAGMA quick_check").fetchone()
    if not result or result[0] != "ok":
        raise BackupError(f"{where}: SQLite integrity check failed: {result[0] if result else 'no answer'}")


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
