"""Reading a version: resolving ``latest``, loading and verifying its files, its examples' previous splits.

A version is read only if ``dataset.json`` matches the ``content_sha256`` in its
``metadata.json``; an archived version is restored from its archive first (unless the
caller already holds the signature's lock and asks not to).
"""

from __future__ import annotations

import json
from pathlib import Path

from ratchet.data.datasets.archive import restore_version
from ratchet.data.datasets.layout import (
    ARCHIVE,
    LATEST,
    VERSION_PATTERN,
    latest_name,
    read_json,
    version_key,
    version_names,
)
from ratchet.data.datasets.results import DatasetVersion
from ratchet.data.datasets.splits import SPLITS
from ratchet.data.records import ExampleRecord
from ratchet.errors import DataError
from ratchet.hashing import sha256_hex
from ratchet.store.jsonl import iter_jsonl

__all__ = ["previous_splits", "read_version", "resolve_version"]


def resolve_version(sig_dir: Path, signature: str, version: str) -> str:
    """The version name ``version`` stands for (``latest`` resolved); DataError when none or malformed."""
    if version == LATEST:
        name = latest_name(sig_dir)
        if name is None:
            raise DataError(f"no dataset versions of '{signature}' yet (create one with `ratchet dataset create`)")
        return name
    if not isinstance(version, str) or not VERSION_PATTERN.match(version):
        raise DataError(f"invalid dataset version {version!r} (expected vYYYYMMDD_HHMMSS or '{LATEST}')")
    return version


def read_version(sig_dir: Path, signature: str, version: str, *, restore: bool = True) -> DatasetVersion:
    """A version's verified records and metadata; with ``restore``, an archived version is unpacked first."""
    path = sig_dir / version
    for _ in range(2):
        try:
            metadata = read_json(path / "metadata.json")
            raw = (path / "dataset.json").read_bytes()
            break
        except FileNotFoundError:
            if restore and (sig_dir / ARCHIVE / f"{version}.tar.gz").is_file():
                restore_version(sig_dir, version)
                continue
            known = ", ".join(sorted(version_names(sig_dir), key=version_key)) or "none"
            raise DataError(f"signature '{signature}' has no dataset version '{version}' (known: {known})"
                            ) from None
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: unreadable version: {exc}") from None
    else:
        raise DataError(f"{path}: could not be restored from its archive")
    if not isinstance(metadata, dict) or metadata.get("content_sha256") != sha256_hex(raw):
        raise DataError(f"{path / 'dataset.json'}: content does not match the content_sha256 in metadata.json")
    try:
        document = json.loads(raw.decode("utf-8"))
        records = [ExampleRecord.from_json(item) for item in document["examples"]]
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"{path / 'dataset.json'}: unreadable: {exc}") from None
    return DatasetVersion(signature=signature, version=version, path=path, metadata=metadata, records=records)


def previous_splits(sig_dir: Path, version: str | None) -> dict[str, str | None]:
    """Example id → split in ``version`` (from its provenance), so a re-created input keeps its split."""
    if version is None or not (sig_dir / version / "provenance.jsonl").is_file():
        return {}
    return {str(line.get("example_id")): line.get("split")
            for line in iter_jsonl(sig_dir / version / "provenance.jsonl") if line.get("split") in SPLITS}
