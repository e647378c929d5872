"""Owner-only files and directories for everything that holds user text.

Telemetry, datasets, program versions (their demos), alerts, run directories, logs, the SQLite
state database and the home itself hold what users typed. Ratchet creates them readable by their
owner only: files ``0o600`` (``0o400`` for write-once dataset files), directories ``0o700``.
Modes are handed to ``open(2)`` and ``mkdir(2)``, which apply the umask: a stricter umask
narrows them further, and nothing is ever created wider than the umask allows. Files and
directories that already exist keep their modes.

Files meant to be read by others (the ``ratchet init`` templates, ``routing_config.json``)
are written with :data:`SHARED_FILE` explicitly.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "PRIVATE_READ_ONLY",
    "SHARED_FILE",
    "create_private",
    "make_private_dir",
    "open_private",
    "private_opener",
]

PRIVATE_FILE = 0o600
PRIVATE_READ_ONLY = 0o400
PRIVATE_DIR = 0o700
SHARED_FILE = 0o644


def make_private_dir(path: Path) -> Path:
    """Create ``path`` and each missing parent as owner-only directories; return ``path``.

    Like ``mkdir -p`` (existing directories are left as they are; a file in the way raises
    ``FileExistsError``), except that every directory it creates gets ``0o700``, not just the last.
    """
    path = Path(path)
    missing = []
    probe = path
    while not probe.is_dir() and probe.parent != probe:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            os.mkdir(directory, PRIVATE_DIR)
        except FileExistsError:  # another process made it meanwhile, or a file is in the way
            if not directory.is_dir():
                raise
    return path


def open_private(path: Path, flags: int, mode: int = PRIVATE_FILE) -> int:
    """``os.open(path, flags | O_CREAT | O_CLOEXEC)`` creating a missing file with ``mode`` (owner-only)."""
    return os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, mode)


def private_opener(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that creates files owner-only: ``open(p, "ab", opener=private_opener)``."""
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE_FILE)


def create_private(path: Path, mode: int = PRIVATE_FILE) -> None:
    """Create ``path`` empty and owner-only unless it exists, so a library that opens it later (SQLite,
    ``dspy.Module.save``) writes into a file with the right mode: opening an existing file keeps its mode."""
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode))
