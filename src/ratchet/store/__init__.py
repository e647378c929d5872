"""Storage primitives: atomic files, tolerant JSON Lines, owner-only files and directories."""

from ratchet.store.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir
from ratchet.store.jsonl import JsonlReadStats, append_jsonl, iter_jsonl, read_jsonl
from ratchet.store.private import (
    PRIVATE_DIR,
    PRIVATE_FILE,
    PRIVATE_READ_ONLY,
    SHARED_FILE,
    create_private,
    make_private_dir,
    open_private,
    private_opener,
)

__all__ = [
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "PRIVATE_READ_ONLY",
    "SHARED_FILE",
    "JsonlReadStats",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "create_private",
    "fsync_dir",
    "iter_jsonl",
    "make_private_dir",
    "open_private",
    "private_opener",
    "read_jsonl",
]
