"""Archived versions: one ``archive/<version>.tar.gz`` each, packed, listed and restored.

Packing writes the archive atomically and then renames the version directory away
before deleting it, so readers see the version or nothing, never half a directory.
``metadata.json`` is the archive's first member: listing reads it without unpacking.
Restoring unpacks into a temp directory (only the three expected members) and renames
it into place under the signature's lock.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import uuid
from pathlib import Path
from typing import Any

from ratchet.data.datasets.layout import ARCHIVE, FILES, TEMP_PREFIX
from ratchet.data.datasets.lock import locked
from ratchet.errors import DataError
from ratchet.store.atomic import atomic_write_bytes, fsync_dir
from ratchet.store.private import PRIVATE_DIR, PRIVATE_READ_ONLY, make_private_dir

__all__ = ["archive_version", "archived_metadata", "restore_version"]


def archive_version(sig_dir: Path, version: str) -> None:
    """Pack ``<version>/`` into ``archive/<version>.tar.gz`` and remove the directory (the caller holds the lock)."""
    archive_dir = sig_dir / ARCHIVE
    make_private_dir(archive_dir)
    source = sig_dir / version
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in FILES:
            tar.add(source / name, arcname=f"{version}/{name}")
    atomic_write_bytes(archive_dir / f"{version}.tar.gz", buffer.getvalue(), mode=PRIVATE_READ_ONLY)
    gone = sig_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
    os.rename(source, gone)  # readers see the version or nothing, never half a directory
    fsync_dir(sig_dir)
    shutil.rmtree(gone, ignore_errors=True)


def restore_version(sig_dir: Path, version: str) -> None:
    """Unpack ``archive/<version>.tar.gz`` into a temp dir and rename it into place."""
    archive = sig_dir / ARCHIVE / f"{version}.tar.gz"
    expected = {f"{version}/{name}": name for name in FILES}
    with locked(sig_dir):
        if (sig_dir / version / "metadata.json").is_file():
            return
        tmp = sig_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        os.mkdir(tmp, PRIVATE_DIR)
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for member in tar:
                    handle = tar.extractfile(member) if member.isfile() else None
                    if member.name not in expected or handle is None:
                        raise DataError(f"{archive}: unexpected member {member.name!r}")
                    atomic_write_bytes(tmp / expected[member.name], handle.read(), mode=PRIVATE_READ_ONLY)
            missing = [name for name in FILES if not (tmp / name).is_file()]
            if missing:
                raise DataError(f"{archive}: missing {', '.join(missing)}")
            os.rename(tmp, sig_dir / version)
            fsync_dir(sig_dir)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise DataError(f"{archive}: cannot restore: {exc}") from None
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def archived_metadata(sig_dir: Path, version: str) -> dict[str, Any]:
    """The ``metadata.json`` of an archived version, read from the archive's first member."""
    with tarfile.open(sig_dir / ARCHIVE / f"{version}.tar.gz", "r:gz") as tar:
        for member in tar:  # metadata.json is the first member
            if member.name == f"{version}/metadata.json" and member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    return json.loads(handle.read().decode("utf-8"))
            break
    raise ValueError("no metadata.json in the archive")
