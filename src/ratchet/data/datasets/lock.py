"""The writers' lock of one signature: ``flock`` on ``<signature>/.lock``.

Writers of one signature (create, add, archive, restore) hold it, so an ``add`` never
loses a concurrent ``add``'s examples and ``latest`` only moves forward. The kernel
releases it when the process dies; it is not re-entrant (a second ``locked`` of the
same signature in one process blocks).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from ratchet.data.datasets.layout import LOCK
from ratchet.store.filelock import file_lock

__all__ = ["locked"]


@contextlib.contextmanager
def locked(sig_dir: Path) -> Iterator[None]:
    """The signature's writer lock (released by the kernel if the process dies). Not re-entrant."""
    with file_lock(sig_dir / LOCK):
        yield
