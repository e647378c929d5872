"""The store's on-disk layout and format: paths, version names, the ``latest`` pointer, JSON encoding.

Under ``<home>/training_data`` (seed 001)::

    <signature>/v20261125_120000/dataset.json      {"signature", "version", "examples": [...]}
    <signature>/v20261125_120000/metadata.json     lineage, counts, splits, statistics, hash
    <signature>/v20261125_120000/provenance.jsonl  per example: id, source, timestamp, quality…
    <signature>/latest -> v20261125_120000         the newest complete version
    <signature>/archive/v20260801_020000.tar.gz    archived versions (restored by ``load``)
    <signature>/.lock                              the writers' lock
    <signature>/.tmp-<uuid>                        a version (or link) being built

Version names sort by time (``vYYYYMMDD_HHMMSS``, then ``_1``, ``_2``… within one second);
this module reads and allocates them and reads where ``latest`` points, nothing more.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from ratchet.errors import DataError
from ratchet.programs.registry import NAME_PATTERN

__all__ = [
    "ARCHIVE",
    "FILES",
    "FORMAT",
    "LATEST",
    "LOCK",
    "TEMP_PREFIX",
    "VERSION_PATTERN",
    "checked_name",
    "encode",
    "is_temp",
    "latest_name",
    "new_version_names",
    "read_json",
    "version_key",
    "version_names",
]

LATEST = "latest"
VERSION_PATTERN = re.compile(r"^v(\d{8}_\d{6})(?:_(\d{1,6}))?$")
FORMAT = 1
TEMP_PREFIX = ".tmp-"
LOCK = ".lock"
ARCHIVE = "archive"
FILES = ("metadata.json", "dataset.json", "provenance.jsonl")  # metadata first: archives list without unpacking


def checked_name(signature: str) -> str:
    if not isinstance(signature, str) or not NAME_PATTERN.match(signature):
        raise DataError(f"invalid signature name {signature!r}: use letters, digits and underscores")
    return signature


def is_temp(name: str) -> bool:
    """A temp dir or link of this package (``.tmp-…``) or a temp file of ``atomic_write_bytes`` (``.….tmp``)."""
    return name.startswith(TEMP_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))


def version_key(name: str) -> tuple[str, int]:
    match = VERSION_PATTERN.match(name)
    if not match:
        return ("", -1)
    return (match.group(1), int(match.group(2) or 0))


def version_names(sig_dir: Path) -> dict[str, bool]:
    """Version name → archived, for complete live versions and archives."""
    names: dict[str, bool] = {}
    archive_dir = sig_dir / ARCHIVE
    if archive_dir.is_dir():
        for entry in archive_dir.iterdir():
            name = entry.name.removesuffix(".tar.gz")
            if entry.name.endswith(".tar.gz") and VERSION_PATTERN.match(name):
                names[name] = True
    if sig_dir.is_dir():
        for entry in sig_dir.iterdir():
            if VERSION_PATTERN.match(entry.name) and (entry / "metadata.json").is_file():
                names[entry.name] = False
    return names


def latest_name(sig_dir: Path, *, fallback: bool = True) -> str | None:
    """The version ``latest`` points at; without the link, the newest live version with ``fallback``, else None."""
    try:
        target = os.readlink(sig_dir / LATEST)
    except FileNotFoundError:
        if not fallback:
            return None
        live = [n for n, archived in version_names(sig_dir).items() if not archived]
        return max(live, key=version_key, default=None)
    except OSError as exc:
        raise DataError(f"{sig_dir / LATEST}: not a symlink to a version ({exc})") from None
    if not VERSION_PATTERN.match(target):
        raise DataError(f"{sig_dir / LATEST}: points at {target!r}, not a version")
    return target


def new_version_names(sig_dir: Path, now: datetime) -> Iterator[str]:
    """Free version names after every existing one: ``vYYYYMMDD_HHMMSS``, then ``_1``, ``_2``…"""
    stamp = now.strftime("%Y%m%d_%H%M%S")
    taken = version_names(sig_dir)
    newest = max((version_key(n) for n in taken), default=("", -1))
    stamp = max(stamp, newest[0])  # a clock that went back must not make the new version sort first
    for n in range(100_000):
        name = f"v{stamp}" if n == 0 else f"v{stamp}_{n}"
        if name not in taken and version_key(name) > newest and not (sig_dir / name).exists():
            yield name
    raise DataError(f"{sig_dir}: could not allocate a version name")


def encode(value: Any) -> bytes:
    """Compact UTF-8 JSON; TypeError/ValueError when the value is not plain JSON (NaN included)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def read_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return json.loads(fh.read().decode("utf-8"))
