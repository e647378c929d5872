"""Storage primitives: atomic files and tolerant JSON Lines."""

from ratchet.store.atomic import atomic_write_bytes, atomic_write_json, atomic_write_text, fsync_dir
from ratchet.store.jsonl import JsonlReadStats, append_jsonl, iter_jsonl, read_jsonl

__all__ = [
    "JsonlReadStats",
    "append_jsonl",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fsync_dir",
    "iter_jsonl",
    "read_jsonl",
]
