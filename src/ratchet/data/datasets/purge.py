"""Removing examples from every version of a signature, so their text is really gone (right to deletion).

Versions are immutable for everything else; this is the one exception, and it is recorded. Under the
signature's lock: when ``latest`` holds matching examples, a new version without them is committed
first (parent: that version; operation ``delete_user_data``), so training moves on from clean data.
Then every version that holds a match, live or archived, is rewritten without it: ``dataset.json``,
``provenance.jsonl`` and ``metadata.json`` (new ``content_sha256``, counts, statistics, and a
``privacy_edits`` entry saying when and how many were removed), each file atomically and owner-read-only,
``dataset.json`` last (a crash before it leaves the examples there, so running the deletion again finishes
the version); an archive is repacked whole. Readers verify a version by its ``content_sha256``.
"""

from __future__ import annotations

import io
import json
import tarfile
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.data.datasets.admit import encoded
from ratchet.data.datasets.commit import commit_version
from ratchet.data.datasets.layout import ARCHIVE, FILES, encode, latest_name, version_key, version_names
from ratchet.data.datasets.lock import locked
from ratchet.data.datasets.splits import SPLITS
from ratchet.data.datasets.stats import dataset_statistics
from ratchet.data.records import META_KEY, ExampleRecord
from ratchet.hashing import sha256_hex
from ratchet.store.atomic import atomic_write_bytes
from ratchet.store.private import PRIVATE_READ_ONLY

__all__ = ["ExampleMatch", "SignaturePurge", "purge_signature"]

ExampleMatch = Callable[[Mapping[str, Any]], bool]
"""Whether an example (its ``dataset.json`` object: fields plus ``_meta``) is to be removed."""


@dataclass
class SignaturePurge:
    """What removing examples from one signature's versions did."""

    signature: str
    example_ids: set[str] = field(default_factory=set)  # distinct examples removed, over all versions
    versions_rewritten: list[str] = field(default_factory=list)
    new_version: str | None = None
    removed_values: list[dict[str, Any]] = field(default_factory=list)  # their fields (to find demos made of them)
    store: str = "training_data"  # or "golden": which root the versions live under

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "examples": len(self.example_ids),
                "versions_rewritten": self.versions_rewritten, "new_version": self.new_version,
                **({"store": self.store} if self.store != "training_data" else {})}


def purge_signature(sig_dir: Path, signature: str, match: ExampleMatch, *, edit: Mapping[str, Any]) -> SignaturePurge:
    """Remove the examples ``match`` selects from every version under ``sig_dir`` (see the module docstring).

    ``edit`` is recorded in each rewritten version's ``privacy_edits`` (e.g. the deletion's id), with the time and
    the number removed.
    """
    result = SignaturePurge(signature)
    if not sig_dir.is_dir():
        return result
    edit = {"at": datetime.now(UTC).isoformat(timespec="seconds"), **edit}
    with locked(sig_dir):
        latest = latest_name(sig_dir)
        if latest is not None and (sig_dir / latest / "dataset.json").is_file():
            files = {name: (sig_dir / latest / name).read_bytes() for name in FILES}
            kept = _split(files["dataset.json"], match)[0]
            if len(kept) < _count(files["dataset.json"]):
                rows = [(record, *encoded(record)) for record in map(ExampleRecord.from_json, kept)]
                removed = _count(files["dataset.json"]) - len(kept)
                result.new_version = commit_version(
                    sig_dir, signature, rows, parent=latest, notes="user data removed (right to deletion)",
                    operation={"kind": "delete_user_data", "removed": removed,
                               **{k: v for k, v in edit.items() if k != "at"}})
        for version, archived in sorted(version_names(sig_dir).items(), key=lambda item: version_key(item[0])):
            if archived and not (sig_dir / version).is_dir():
                changed = _purge_archive(sig_dir / ARCHIVE / f"{version}.tar.gz", version, match, edit, result)
            else:
                changed = _purge_live(sig_dir / version, match, edit, result)
            if changed:
                result.versions_rewritten.append(version)
    return result


def _purge_live(path: Path, match: ExampleMatch, edit: Mapping[str, Any], result: SignaturePurge) -> bool:
    files = {name: (path / name).read_bytes() for name in FILES}
    rewritten = _rewrite(files, match, edit, result)
    if rewritten is None:
        return False
    # metadata.json first, dataset.json last: after a crash in between, dataset.json still holds the examples, so
    # running the deletion again finds them and writes all three (a reader meanwhile is refused by the hash check).
    for name in ("metadata.json", "provenance.jsonl", "dataset.json"):
        atomic_write_bytes(path / name, rewritten[name], mode=PRIVATE_READ_ONLY)
    return True


def _purge_archive(archive: Path, version: str, match: ExampleMatch, edit: Mapping[str, Any],
                   result: SignaturePurge) -> bool:
    files: dict[str, bytes] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            handle = tar.extractfile(member) if member.isfile() else None
            if handle is not None and member.name.startswith(f"{version}/"):
                files[member.name.split("/", 1)[1]] = handle.read()
    if any(name not in files for name in FILES):
        raise ValueError(f"{archive}: not a dataset version archive (missing {', '.join(set(FILES) - set(files))})")
    rewritten = _rewrite(files, match, edit, result)
    if rewritten is None:
        return False
    buffer = io.BytesIO()
    now = int(datetime.now(UTC).timestamp())
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in FILES:  # metadata.json first: listing reads it without unpacking
            info = tarfile.TarInfo(f"{version}/{name}")
            info.size, info.mode, info.mtime = len(rewritten[name]), PRIVATE_READ_ONLY, now
            tar.addfile(info, io.BytesIO(rewritten[name]))
    atomic_write_bytes(archive, buffer.getvalue(), mode=PRIVATE_READ_ONLY)
    return True


def _rewrite(files: Mapping[str, bytes], match: ExampleMatch, edit: Mapping[str, Any], result: SignaturePurge
             ) -> dict[str, bytes] | None:
    """The three files without the matching examples, or None when nothing matches."""
    kept, removed = _split(files["dataset.json"], match)
    if not removed:
        return None
    gone = {str((item.get(META_KEY) or {}).get("id", "")) for item in removed}
    result.example_ids.update(gone)
    for item in removed:
        values = {k: v for k, v in item.items() if k != META_KEY}
        if values not in result.removed_values:
            result.removed_values.append(values)
    document = json.loads(files["dataset.json"].decode("utf-8"))
    head = encode({"signature": document.get("signature"), "version": document.get("version")})[:-1]
    dataset = head + b', "examples": [\n' + b",\n".join(encode(item) for item in kept) + b"\n]}\n"
    provenance = b"".join(line + b"\n" for line in files["provenance.jsonl"].splitlines()
                          if line.strip() and str(json.loads(line).get("example_id")) not in gone)
    records = [ExampleRecord.from_json(item) for item in kept]
    metadata = json.loads(files["metadata.json"].decode("utf-8"))
    statistics = dataset_statistics(records)
    metadata.update(example_count=len(records), content_sha256=sha256_hex(dataset), statistics=statistics,
                    sources=sorted(statistics["sources"]),
                    split_counts={**dict.fromkeys(SPLITS, 0), **Counter(r.split for r in records if r.split)})
    metadata["privacy_edits"] = [*metadata.get("privacy_edits", []), {**edit, "removed": len(removed)}]
    return {"dataset.json": dataset, "provenance.jsonl": provenance,
            "metadata.json": (json.dumps(metadata, indent=2, ensure_ascii=False) + "\n").encode("utf-8")}


def _split(raw: bytes, match: ExampleMatch) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The examples of a ``dataset.json`` kept and removed by ``match``."""
    examples = json.loads(raw.decode("utf-8"))["examples"]
    kept, removed = [], []
    for item in examples:
        (removed if match(item) else kept).append(item)
    return kept, removed


def _count(raw: bytes) -> int:
    return len(json.loads(raw.decode("utf-8"))["examples"])
