"""Writing a version atomically, switching ``latest`` forward, and sweeping what interrupted writers left.

A version is built in a hidden ``.tmp-<uuid>`` directory, each file written atomically
and owner-read-only (``0o400``), then renamed into place under a fresh name; only then is
``latest`` switched (``os.replace`` of a fresh symlink), and never backwards. A crash at
any moment leaves ``latest`` on a complete version and, at worst, a ``.tmp-*`` leftover
that :func:`sweep_temp_entries` removes later. Callers hold the signature's lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.data.datasets.admit import Row
from ratchet.data.datasets.layout import (
    ARCHIVE,
    FORMAT,
    LATEST,
    TEMP_PREFIX,
    encode,
    is_temp,
    latest_name,
    new_version_names,
    version_key,
)
from ratchet.data.datasets.splits import SPLITS
from ratchet.data.datasets.stats import dataset_statistics
from ratchet.errors import DataError
from ratchet.hashing import sha256_hex
from ratchet.store.atomic import atomic_write_bytes, fsync_dir
from ratchet.store.private import PRIVATE_DIR, PRIVATE_READ_ONLY

__all__ = ["commit_version", "point_latest", "sweep_temp_entries"]


def commit_version(sig_dir: Path, signature: str, rows: list[Row], *, parent: str | None, notes: str,
                   operation: dict[str, Any]) -> str:
    """Write the version in a temp dir, rename it into place, switch ``latest``; returns its name."""
    now = datetime.now(UTC)
    tmp = sig_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    os.mkdir(tmp, PRIVATE_DIR)
    try:
        examples = [row[0] for row in rows]
        lines = [row[1] for row in rows]
        provenance = b"".join(row[2] + b"\n" for row in rows)
        split_counts = {**dict.fromkeys(SPLITS, 0), **Counter(r.split for r in examples)}
        statistics = dataset_statistics(examples)
        for version in new_version_names(sig_dir, now):
            head = encode({"signature": signature, "version": version})[:-1]
            dataset = head + b', "examples": [\n' + b",\n".join(lines) + b"\n]}\n"
            metadata = {
                "format": FORMAT, "version": version, "signature": signature,
                "created": now.isoformat(timespec="seconds"), "parent": parent, "notes": notes,
                "sources": sorted(statistics["sources"]), "example_count": len(examples),
                "split_counts": split_counts, "content_sha256": sha256_hex(dataset),
                "operation": operation, "statistics": statistics,
            }
            atomic_write_bytes(tmp / "dataset.json", dataset, mode=PRIVATE_READ_ONLY)
            atomic_write_bytes(tmp / "provenance.jsonl", provenance, mode=PRIVATE_READ_ONLY)
            atomic_write_bytes(tmp / "metadata.json", (json.dumps(metadata, indent=2, ensure_ascii=False)
                                                       + "\n").encode("utf-8"), mode=PRIVATE_READ_ONLY)
            try:
                os.rename(tmp, sig_dir / version)  # fails onto an existing (non-empty) version
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    continue
                raise
            fsync_dir(sig_dir)
            point_latest(sig_dir, version)
            return version
        raise AssertionError("unreachable")  # pragma: no cover
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def point_latest(sig_dir: Path, version: str) -> None:
    """Switch ``latest`` to ``version`` atomically, unless it already points at a newer one."""
    current = latest_name(sig_dir, fallback=False)
    if current is not None and version_key(current) >= version_key(version):
        return
    link = sig_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    os.symlink(version, link)
    try:
        os.replace(link, sig_dir / LATEST)
    except OSError as exc:
        link.unlink(missing_ok=True)
        raise DataError(f"{sig_dir / LATEST}: cannot switch to {version}: {exc}") from None
    fsync_dir(sig_dir)


def sweep_temp_entries(sig_dirs: Iterable[Path], max_age_s: float, *, dry_run: bool = False) -> list[Path]:
    """Remove temp entries (``.tmp-*``, ``.*.tmp``) older than ``max_age_s`` in these signature directories and
    their archives; returns them (with ``dry_run``, what would be removed)."""
    now = time.time()
    removed = []
    for directory in [d for s in sig_dirs for d in (s, s / ARCHIVE)]:
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if not is_temp(entry.name):
                continue
            with contextlib.suppress(FileNotFoundError):
                if now - entry.lstat().st_mtime < max_age_s:
                    continue
                if dry_run:
                    removed.append(entry)
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed
