"""DSPy's response cache, chosen by the kind of process.

=======================  ============================================  ==========================================
process                  memory tier                                   disk tier
=======================  ============================================  ==========================================
serving (``Runtime``)    off (default), or an LRU of                   never: it would keep unredacted prompts'
                         ``serve.lm_cache_entries`` entries            answers on disk, outside telemetry's
                         (``serve.lm_cache = "memory"``)               redaction and retention
optimize, eval, predict  DSPy's LRU                                    ``<home>/cache/dspy``, removed by
                                                                       ``ratchet cleanup`` once unused for
                                                                       ``retention.dspy_cache_days``
=======================  ============================================  ==========================================

A process whose DSPy cache is the disk cache holds a SHARED ``flock`` on
``<home>/cache/dspy.lock`` for as long as it may write it (and touches the file, so its
mtime tells when the cache was last opened). ``ratchet cleanup`` removes the directory only
under the EXCLUSIVE lock, taken without waiting: a cache some process has open is never
removed, and a process starting meanwhile waits until the removal is done.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import dspy

from ratchet.store.private import make_private_dir

if TYPE_CHECKING:
    from ratchet.config.settings import ServeSettings, Settings

__all__ = ["configure_lm_cache", "dspy_cache_dir", "dspy_cache_lock_path", "serving_caches", "unused_dspy_cache"]

_held: dict[Path, int] = {}  # lock file -> descriptor holding the shared lock, for this process's disk cache
_held_lock = threading.Lock()


def dspy_cache_dir(home: Path) -> Path:
    """The directory of DSPy's disk cache for a home (optimization, evaluation, ``ratchet predict``)."""
    return home / "cache" / "dspy"


def dspy_cache_lock_path(home: Path) -> Path:
    """The lock file users of the disk cache hold shared (next to the directory, so removal keeps it)."""
    return home / "cache" / "dspy.lock"


def serving_caches(serve: ServeSettings) -> bool:
    """Whether serving keeps LM answers at all (then only in memory, at most ``lm_cache_entries``)."""
    return serve.lm_cache == "memory"


def configure_lm_cache(settings: Settings, *, serving: bool) -> None:
    """Install the DSPy cache this kind of process gets (see the module docstring)."""
    if serving:
        _release()
        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=serving_caches(settings.serve),
                             disk_cache_dir=None, memory_max_entries=settings.serve.lm_cache_entries)
        return
    home = settings.home_dir
    make_private_dir(dspy_cache_dir(home))  # prompts and answers: owner-only, like the rest of the home
    _hold_shared(dspy_cache_lock_path(home))
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True,
                         disk_cache_dir=str(dspy_cache_dir(home)))


def _hold_shared(lock_path: Path) -> None:
    """Hold the shared lock on ``lock_path`` for the rest of the process (released for any other path)."""
    with _held_lock:
        for path in [p for p in _held if p != lock_path]:
            os.close(_held.pop(path))
        fd = _held.get(lock_path)
        if fd is None:
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_SH)  # waits only while a cleanup removes the directory
            except BaseException:
                os.close(fd)
                raise
            _held[lock_path] = fd
        os.utime(fd)  # "last opened", for cleanup


def _release() -> None:
    """Stop holding any disk cache's lock (this process no longer uses a disk cache)."""
    with _held_lock:
        while _held:
            os.close(_held.popitem()[1])


@contextlib.contextmanager
def unused_dspy_cache(home: Path, *, create: bool = True) -> Iterator[bool]:
    """Hold the exclusive lock of the home's disk cache if no process has it open: yields whether it did.

    While the block runs (and the lock is held) no process can open the cache, so it may be
    removed. ``create=False`` (a dry run) does not create a missing lock file: nobody holds it.
    """
    lock_path = dspy_cache_lock_path(home)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC | (os.O_CREAT if create else 0), 0o644)
    except FileNotFoundError:  # no cache/ directory, or no lock file in a dry run
        yield True
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
