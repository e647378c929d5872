"""The versioned dataset store: immutable, crash-safe versions of each signature's training examples.

Layout under the home directory (seed 001)::

    training_data/<signature>/v20261125_120000/dataset.json      {"signature", "version", "examples": [...]}
    training_data/<signature>/v20261125_120000/metadata.json     lineage, counts, splits, statistics, hash
    training_data/<signature>/v20261125_120000/provenance.jsonl  per example: id, source, timestamp, quality…
    training_data/<signature>/latest -> v20261125_120000         the newest complete version
    training_data/<signature>/archive/v20260801_020000.tar.gz    archived versions (restored by ``load``)

A version is built in a hidden ``.tmp-<uuid>`` directory, fsynced, renamed into
place, and only then is ``latest`` switched (``os.replace`` of a fresh symlink):
a crash at any moment leaves ``latest`` on a complete version. Writers of one
signature hold ``<signature>/.lock`` (``flock``), so an ``add`` never loses a
concurrent ``add``'s examples and ``latest`` only moves forward. Each example's
split comes from a stable hash of its inputs, so an input keeps its split in
every version. Examples are user text: directories are owner-only (``0o700``) and
version files owner-read-only (``0o400``).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import math
import os
import re
import shutil
import tarfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import dspy

from ratchet.config.settings import DataSettings
from ratchet.data.records import DIFFICULTIES, ExampleRecord, input_hash, write_batch
from ratchet.errors import DataError
from ratchet.hashing import BUCKETS, sha256_hex, stable_bucket
from ratchet.programs.registry import NAME_PATTERN, REGISTRY, ProgramRegistry, ProgramSpec
from ratchet.programs.schema import ProgramSchema
from ratchet.store.atomic import atomic_write_bytes, fsync_dir
from ratchet.store.jsonl import iter_jsonl
from ratchet.store.private import PRIVATE_DIR, PRIVATE_READ_ONLY, make_private_dir, open_private

__all__ = [
    "LATEST",
    "SPLITS",
    "VERSION_PATTERN",
    "DatasetDiff",
    "DatasetStore",
    "DatasetVersion",
    "Rejection",
    "VersionInfo",
    "WriteResult",
    "assign_split",
    "dataset_statistics",
]

LATEST = "latest"
SPLITS = ("train", "dev", "test")
VERSION_PATTERN = re.compile(r"^v(\d{8}_\d{6})(?:_(\d{1,6}))?$")
FORMAT = 1
SPLIT_SALT = "ratchet-split"
TEMP_PREFIX = ".tmp-"
_LOCK = ".lock"
_ARCHIVE = "archive"
_FILES = ("metadata.json", "dataset.json", "provenance.jsonl")  # metadata first: archives list without unpacking

_Row = tuple[ExampleRecord, bytes, bytes]  # a record, its dataset.json entry and its provenance line


def assign_split(inputs: Mapping[str, Any], ratios: Mapping[str, float]) -> str:
    """``train``/``dev``/``test`` from a stable hash of the inputs against the cumulative ratios."""
    point = stable_bucket(SPLIT_SALT, input_hash(inputs)) / BUCKETS
    cumulative = 0.0
    for name in SPLITS:
        cumulative += ratios.get(name, 0.0)
        if point < cumulative:
            return name
    return SPLITS[-1]


def dataset_statistics(records: Sequence[ExampleRecord]) -> dict[str, Any]:
    """``quality_scores`` {mean, min, p10 (nearest rank), max, count} and counts by ``difficulty``, ``sources``
    and ``categories`` — the ``statistics`` of a version's metadata."""
    scores = sorted(r.quality for r in records if r.quality is not None)
    quality: dict[str, Any] = {"mean": None, "min": None, "p10": None, "max": None, "count": len(scores)}
    if scores:
        quality.update(mean=round(sum(scores) / len(scores), 2), min=scores[0],
                       p10=scores[max(0, math.ceil(0.1 * len(scores)) - 1)], max=scores[-1])
    difficulty = dict.fromkeys(DIFFICULTIES, 0)
    for record in records:
        if record.difficulty in difficulty:
            difficulty[record.difficulty] += 1
    return {
        "quality_scores": quality,
        "difficulty": difficulty,
        "sources": dict(sorted(Counter(r.source for r in records).items())),
        "categories": dict(sorted(Counter(r.category for r in records if r.category is not None).items())),
    }


@dataclass(frozen=True)
class Rejection:
    """An incoming example that was not stored: its 1-based position in the batch and why."""

    index: int
    reason: str
    preview: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "reason": self.reason, "preview": self.preview}


@dataclass
class WriteResult:
    """What a ``create``/``add`` stored."""

    signature: str
    version: str
    parent: str | None
    path: Path
    example_count: int
    added: int
    duplicates: list[str] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def skipped_duplicates(self) -> int:
        return len(self.duplicates)

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "version": self.version, "parent": self.parent,
                "path": str(self.path), "example_count": self.example_count, "added": self.added,
                "skipped_duplicates": self.skipped_duplicates, "duplicate_ids": self.duplicates[:20],
                "rejected": len(self.rejected), "rejections": [r.to_dict() for r in self.rejected[:50]]}


@dataclass
class VersionInfo:
    """One version as ``list_versions`` shows it (its metadata, whether archived or latest)."""

    signature: str
    version: str
    metadata: dict[str, Any]
    archived: bool = False
    latest: bool = False

    @property
    def created(self) -> datetime:
        """When the version was made (from its metadata, else from its name)."""
        with contextlib.suppress(KeyError, ValueError):
            return datetime.fromisoformat(str(self.metadata["created"]))
        stamp = _version_key(self.version)[0] or "00010101_000000"
        return datetime.strptime(stamp, "%Y%m%d_%H%M%S").replace(tzinfo=UTC)

    @property
    def example_count(self) -> int | None:
        return self.metadata.get("example_count")

    @property
    def quality_mean(self) -> float | None:
        return (self.metadata.get("statistics") or {}).get("quality_scores", {}).get("mean")

    @property
    def sources(self) -> dict[str, int]:
        return dict((self.metadata.get("statistics") or {}).get("sources", {}))

    def to_dict(self) -> dict[str, Any]:
        meta = self.metadata
        return {"version": self.version, "created": meta.get("created"), "parent": meta.get("parent"),
                "notes": meta.get("notes", ""), "example_count": self.example_count,
                "split_counts": meta.get("split_counts"), "quality_mean": self.quality_mean,
                "sources": self.sources, "archived": self.archived, "latest": self.latest}


@dataclass
class DatasetVersion:
    """A loaded version: its records (one split's, when asked) and its metadata."""

    signature: str
    version: str
    path: Path
    metadata: dict[str, Any]
    records: list[ExampleRecord]
    split: str | None = None

    def __len__(self) -> int:
        return len(self.records)

    def by_split(self, split: str) -> list[ExampleRecord]:
        return [r for r in self.records if r.split == split]

    def to_examples(self, schema: ProgramSchema, split: str | None = None) -> list[dspy.Example]:
        """``dspy.Example`` objects (inputs marked) for an optimizer or ``Evaluate``."""
        records = self.records if split is None else self.by_split(split)
        return [r.to_example(schema) for r in records]


@dataclass
class DatasetDiff:
    """How version ``new`` differs from version ``old`` of a signature."""

    signature: str
    old: str
    new: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    counts: dict[str, int]
    quality_mean: dict[str, float | None]
    distributions: dict[str, dict[str, dict[str, int]]]
    examples_added: list[dict[str, Any]] = field(default_factory=list)
    examples_removed: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "old": self.old, "new": self.new, "counts": self.counts,
                "quality_mean": self.quality_mean, "distributions": self.distributions,
                "added": self.added, "removed": self.removed, "changed": self.changed,
                "examples_added": self.examples_added, "examples_removed": self.examples_removed}


class DatasetStore:
    """Versioned training data of every signature under ``<home>/training_data``."""

    def __init__(self, home: Path, settings: DataSettings, *, registry: ProgramRegistry | None = None) -> None:
        self.root = Path(home) / "training_data"
        self.settings = settings
        self.registry = registry if registry is not None else REGISTRY

    # -- writing ------------------------------------------------------------------------------
    def create(self, signature: str, records: Iterable[ExampleRecord], *, source: str, notes: str = ""
               ) -> WriteResult:
        """A new version holding only ``records`` (no parent)."""
        return self._write(signature, records, source=source, notes=notes, incremental=False)

    def add(self, signature: str, records: Iterable[ExampleRecord], *, source: str, notes: str = "") -> WriteResult:
        """A new version: latest's examples plus ``records`` whose ids are new (parent: latest)."""
        return self._write(signature, records, source=source, notes=notes, incremental=True)

    def archive(self, signature: str, older_than_days: float | None = None, keep: int | None = None,
                dry_run: bool = False) -> list[VersionInfo]:
        """Pack versions older than N days into ``archive/<version>.tar.gz`` and remove their directories.

        Never the newest ``keep`` versions nor the one ``latest`` points at. Returns what was (or,
        with ``dry_run``, would be) archived.
        """
        days = self.settings.archive_after_days if older_than_days is None else older_than_days
        keep = self.settings.keep_versions if keep is None else keep
        if days < 0 or keep < 0:
            raise DataError(f"older_than_days and keep must not be negative (got {days}, {keep})")
        sig_dir = self._sig_dir(signature)
        if not sig_dir.is_dir():
            return []
        cutoff = datetime.now(UTC) - timedelta(days=days)
        with self._locked(sig_dir):
            infos = self.list_versions(signature)
            protected = {i.version for i in infos[max(0, len(infos) - keep):]} if keep else set()
            protected |= {i.version for i in infos if i.latest}
            chosen = [i for i in infos if not i.archived and i.version not in protected and i.created < cutoff]
            if not dry_run:
                for info in chosen:
                    self._archive_one(sig_dir, info.version)
                    info.archived = True
        return chosen

    def sweep_temp(self, max_age_s: float = 3600, *, signature: str | None = None, dry_run: bool = False
                   ) -> list[Path]:
        """Remove leftovers of interrupted writers (``.tmp-*``, ``.*.tmp``) older than ``max_age_s``; returns them
        (with ``dry_run``, what would be removed)."""
        if signature is not None:
            sig_dirs = [self.root / _checked_name(signature)]
        elif self.root.is_dir():
            sig_dirs = [p for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)]
        else:
            sig_dirs = []
        now = time.time()
        removed = []
        for directory in [d for s in sig_dirs for d in (s, s / _ARCHIVE)]:
            if not directory.is_dir():
                continue
            for entry in directory.iterdir():
                if not _is_temp(entry.name):
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

    def export(self, signature: str, path: Path, *, version: str = LATEST, split: str | None = None) -> int:
        """Write a version's examples (one split's, when given) as JSON Lines to ``path``; returns how many."""
        target = self.check_output_path(path)
        dataset = self.load(signature, version, split)
        return write_batch(target, dataset.records)

    def check_output_path(self, path: Path) -> Path:
        """``path`` if a file may be written there: never inside the store, never onto a directory."""
        path = Path(path).expanduser()
        resolved = path.resolve()
        root = self.root.resolve()
        if resolved == root or root in resolved.parents:
            raise DataError(f"{path}: refusing to write inside the dataset store ({root}); versions are immutable")
        if resolved.is_dir():
            raise DataError(f"{path}: is a directory (give a file name)")
        return path

    # -- reading ------------------------------------------------------------------------------
    def load(self, signature: str, version: str = LATEST, split: str | None = None) -> DatasetVersion:
        """A version's records and metadata; an archived version is restored from its archive first."""
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split '{split}' (use {', '.join(SPLITS)})")
        self._spec(signature)
        name = self._resolve(signature, version)
        dataset = self._read(signature, name)
        if split is not None:
            dataset.records = dataset.by_split(split)
            dataset.split = split
        return dataset

    def latest_version(self, signature: str) -> str | None:
        """The version ``latest`` points at (the newest complete one if the link is missing), or None."""
        self._spec(signature)
        return self._latest(self.root / signature)

    def list_versions(self, signature: str) -> list[VersionInfo]:
        """Every version, oldest first, live and archived."""
        self._spec(signature)
        sig_dir = self.root / signature
        latest = self._latest(sig_dir)
        infos = []
        for name, archived in sorted(self._names(sig_dir).items(), key=lambda item: _version_key(item[0])):
            try:
                meta = _archived_metadata(sig_dir, name) if archived else _read_json(sig_dir / name / "metadata.json")
            except (OSError, ValueError, tarfile.TarError, EOFError) as exc:
                meta = {"error": f"unreadable metadata: {exc}"}
            infos.append(VersionInfo(signature, name, meta if isinstance(meta, dict) else {}, archived=archived,
                                     latest=name == latest))
        return infos

    def diff(self, signature: str, v1: str, v2: str, *, sample: int = 5) -> DatasetDiff:
        """Ids added/removed/changed from ``v1`` to ``v2``, count, quality and distribution changes."""
        old, new = self.load(signature, v1), self.load(signature, v2)
        old_by_id = {r.id: r for r in old.records}
        new_by_id = {r.id: r for r in new.records}
        added = [i for i in new_by_id if i not in old_by_id]
        removed = [i for i in old_by_id if i not in new_by_id]
        changed = [i for i in new_by_id if i in old_by_id and new_by_id[i].values != old_by_id[i].values]
        old_stats, new_stats = old.metadata.get("statistics", {}), new.metadata.get("statistics", {})
        q_old = old_stats.get("quality_scores", {}).get("mean")
        q_new = new_stats.get("quality_scores", {}).get("mean")
        distributions = {key: _compare(old_stats.get(key, {}), new_stats.get(key, {}))
                         for key in ("difficulty", "sources", "categories")}
        distributions["splits"] = _compare(old.metadata.get("split_counts", {}), new.metadata.get("split_counts", {}))
        return DatasetDiff(
            signature=signature, old=old.version, new=new.version, added=added, removed=removed, changed=changed,
            counts={"old": len(old.records), "new": len(new.records), "added": len(added), "removed": len(removed),
                    "changed": len(changed), "common": len(new_by_id) - len(added)},
            quality_mean={"old": q_old, "new": q_new,
                          "change": None if q_old is None or q_new is None else round(q_new - q_old, 2)},
            distributions=distributions,
            examples_added=[new_by_id[i].to_json() for i in added[:sample]],
            examples_removed=[old_by_id[i].to_json() for i in removed[:sample]],
        )

    # -- internals: writing -------------------------------------------------------------------
    def _write(self, signature: str, records: Iterable[ExampleRecord], *, source: str, notes: str,
               incremental: bool) -> WriteResult:
        spec = self._spec(signature)
        if not isinstance(source, str) or not source.strip():
            raise DataError("a source name is required (e.g. git_mining, synthetic, telemetry)")
        sig_dir = self.root / signature
        make_private_dir(sig_dir)
        with self._locked(sig_dir):
            self.sweep_temp(signature=signature)
            parent = self._latest(sig_dir)
            base = self._read(signature, parent, restore=False).records if incremental and parent else []
            base_rows = [(r, *_encoded(r)) for r in base]
            previous = {} if incremental else self._previous_splits(sig_dir, parent)
            accepted, duplicates, rejected = self._accept(spec, records, source.strip(), {r.id for r in base},
                                                          previous)
            if not accepted:
                reasons = "; ".join(f"#{r.index}: {r.reason}" for r in rejected[:3])
                what = (f"{len(rejected)} rejected ({reasons})" if rejected else
                        f"all {len(duplicates)} already in {parent}" if duplicates else "none given")
                raise DataError(f"no acceptable examples for '{signature}': {what}; nothing stored")
            operation = {"kind": "add" if incremental else "create", "source": source.strip(),
                         "added": len(accepted), "skipped_duplicates": len(duplicates), "rejected": len(rejected)}
            version = self._commit(sig_dir, signature, base_rows + accepted, parent=parent if incremental else None,
                                   notes=notes, operation=operation)
        return WriteResult(signature=signature, version=version, parent=parent if incremental else None,
                           path=sig_dir / version, example_count=len(base) + len(accepted), added=len(accepted),
                           duplicates=duplicates, rejected=rejected)

    def _accept(self, spec: ProgramSpec, records: Iterable[ExampleRecord], source: str, seen: set[str],
                previous_splits: dict[str, str | None]) -> tuple[list[_Row], list[str], list[Rejection]]:
        """Validated, split and encoded new examples; ids already seen; rejections with reasons."""
        accepted: list[_Row] = []
        duplicates: list[str] = []
        rejected: list[Rejection] = []
        seen = set(seen)
        for index, record in enumerate(records, start=1):
            try:
                clean = self._clean(spec, record, source)
                if clean.id in seen:
                    duplicates.append(clean.id)
                    continue
                clean.split = previous_splits.get(clean.id) or assign_split(clean.inputs(spec.schema),
                                                                            self.settings.split_ratios)
                row = (clean, *_encoded(clean))
            except DataError as exc:
                rejected.append(Rejection(index, str(exc), _preview(record)))
                continue
            seen.add(clean.id)
            accepted.append(row)
        return accepted, duplicates, rejected

    def _clean(self, spec: ProgramSpec, record: ExampleRecord, source: str) -> ExampleRecord:
        """A validated copy of ``record`` with id, source and category set; DataError with the reason if unusable."""
        if not isinstance(record, ExampleRecord):
            raise DataError(f"expected an ExampleRecord, got {type(record).__name__}")
        if record.signature != spec.name:
            raise DataError(f"example of signature '{record.signature}', not '{spec.name}'")
        values = record.values
        if not isinstance(values, dict):
            raise DataError(f"example values must be an object, got {type(values).__name__}")
        schema = spec.schema
        input_names, output_names = schema.input_names, schema.output_names
        unknown = sorted(set(values).difference(input_names, output_names))
        if unknown:
            raise DataError(f"unknown field '{unknown[0]}' (expected: {', '.join(input_names + output_names)})")
        inputs = schema.validate_inputs({k: values[k] for k in input_names if k in values})
        outputs = schema.validate_outputs({k: values[k] for k in output_names if k in values})
        clean_values = {k: v for k, v in {**inputs, **outputs}.items() if k in values}
        for name, value in clean_values.items():
            longest = _longest_string(value)
            if longest > self.settings.max_field_chars:
                raise DataError(f"field '{name}' has a value of {longest} characters "
                                f"(max_field_chars = {self.settings.max_field_chars})")
        clean = replace(record, values=clean_values, source=record.source or source,
                        metadata=dict(record.metadata or {}))
        clean.ensure_id(schema)
        if clean.category is None:
            with contextlib.suppress(Exception):  # a user's category function must not block the data
                clean.category = spec.category(clean_values)
        return clean

    def _commit(self, sig_dir: Path, signature: str, rows: list[_Row], *, parent: str | None, notes: str,
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
            for version in self._new_names(sig_dir, now):
                head = _encode({"signature": signature, "version": version})[:-1]
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
                self._point_latest(sig_dir, version)
                return version
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _new_names(self, sig_dir: Path, now: datetime) -> Iterator[str]:
        """Free version names after every existing one: ``vYYYYMMDD_HHMMSS``, then ``_1``, ``_2``…"""
        stamp = now.strftime("%Y%m%d_%H%M%S")
        taken = self._names(sig_dir)
        newest = max((_version_key(n) for n in taken), default=("", -1))
        stamp = max(stamp, newest[0])  # a clock that went back must not make the new version sort first
        for n in range(100_000):
            name = f"v{stamp}" if n == 0 else f"v{stamp}_{n}"
            if name not in taken and _version_key(name) > newest and not (sig_dir / name).exists():
                yield name
        raise DataError(f"{sig_dir}: could not allocate a version name")

    def _point_latest(self, sig_dir: Path, version: str) -> None:
        """Switch ``latest`` to ``version`` atomically, unless it already points at a newer one."""
        current = self._latest(sig_dir, fallback=False)
        if current is not None and _version_key(current) >= _version_key(version):
            return
        link = sig_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        os.symlink(version, link)
        try:
            os.replace(link, sig_dir / LATEST)
        except OSError as exc:
            link.unlink(missing_ok=True)
            raise DataError(f"{sig_dir / LATEST}: cannot switch to {version}: {exc}") from None
        fsync_dir(sig_dir)

    def _archive_one(self, sig_dir: Path, version: str) -> None:
        archive_dir = sig_dir / _ARCHIVE
        make_private_dir(archive_dir)
        source = sig_dir / version
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name in _FILES:
                tar.add(source / name, arcname=f"{version}/{name}")
        atomic_write_bytes(archive_dir / f"{version}.tar.gz", buffer.getvalue(), mode=PRIVATE_READ_ONLY)
        gone = sig_dir / f"{TEMP_PREFIX}{uuid.uuid4().hex}"
        os.rename(source, gone)  # readers see the version or nothing, never half a directory
        fsync_dir(sig_dir)
        shutil.rmtree(gone, ignore_errors=True)

    @contextlib.contextmanager
    def _locked(self, sig_dir: Path) -> Iterator[None]:
        """The signature's writer lock (released by the kernel if the process dies). Not re-entrant."""
        make_private_dir(sig_dir)
        fd = open_private(sig_dir / _LOCK, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- internals: reading -------------------------------------------------------------------
    def _spec(self, signature: str) -> ProgramSpec:
        return self.registry.get(_checked_name(signature))

    def _sig_dir(self, signature: str) -> Path:
        self._spec(signature)
        return self.root / signature

    def _resolve(self, signature: str, version: str) -> str:
        if version == LATEST:
            name = self._latest(self.root / signature)
            if name is None:
                raise DataError(f"no dataset versions of '{signature}' yet (create one with `ratchet dataset create`)")
            return name
        if not isinstance(version, str) or not VERSION_PATTERN.match(version):
            raise DataError(f"invalid dataset version {version!r} (expected vYYYYMMDD_HHMMSS or '{LATEST}')")
        return version

    def _latest(self, sig_dir: Path, *, fallback: bool = True) -> str | None:
        try:
            target = os.readlink(sig_dir / LATEST)
        except FileNotFoundError:
            if not fallback:
                return None
            live = [n for n, archived in self._names(sig_dir).items() if not archived]
            return max(live, key=_version_key, default=None)
        except OSError as exc:
            raise DataError(f"{sig_dir / LATEST}: not a symlink to a version ({exc})") from None
        if not VERSION_PATTERN.match(target):
            raise DataError(f"{sig_dir / LATEST}: points at {target!r}, not a version")
        return target

    def _names(self, sig_dir: Path) -> dict[str, bool]:
        """Version name → archived, for complete live versions and archives."""
        names: dict[str, bool] = {}
        archive_dir = sig_dir / _ARCHIVE
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

    def _read(self, signature: str, version: str, *, restore: bool = True) -> DatasetVersion:
        sig_dir = self.root / signature
        path = sig_dir / version
        for _ in range(2):
            try:
                metadata = _read_json(path / "metadata.json")
                raw = (path / "dataset.json").read_bytes()
                break
            except FileNotFoundError:
                if restore and (sig_dir / _ARCHIVE / f"{version}.tar.gz").is_file():
                    self._restore(sig_dir, version)
                    continue
                known = ", ".join(sorted(self._names(sig_dir), key=_version_key)) or "none"
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

    def _restore(self, sig_dir: Path, version: str) -> None:
        """Unpack ``archive/<version>.tar.gz`` into a temp dir and rename it into place."""
        archive = sig_dir / _ARCHIVE / f"{version}.tar.gz"
        expected = {f"{version}/{name}": name for name in _FILES}
        with self._locked(sig_dir):
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
                missing = [name for name in _FILES if not (tmp / name).is_file()]
                if missing:
                    raise DataError(f"{archive}: missing {', '.join(missing)}")
                os.rename(tmp, sig_dir / version)
                fsync_dir(sig_dir)
            except (tarfile.TarError, EOFError, OSError) as exc:
                raise DataError(f"{archive}: cannot restore: {exc}") from None
            finally:
                if tmp.exists():
                    shutil.rmtree(tmp, ignore_errors=True)

    def _previous_splits(self, sig_dir: Path, version: str | None) -> dict[str, str | None]:
        """Example id → split in ``version`` (from its provenance), so a re-created input keeps its split."""
        if version is None or not (sig_dir / version / "provenance.jsonl").is_file():
            return {}
        return {str(line.get("example_id")): line.get("split")
                for line in iter_jsonl(sig_dir / version / "provenance.jsonl") if line.get("split") in SPLITS}


def _checked_name(signature: str) -> str:
    if not isinstance(signature, str) or not NAME_PATTERN.match(signature):
        raise DataError(f"invalid signature name {signature!r}: use letters, digits and underscores")
    return signature


def _is_temp(name: str) -> bool:
    """A temp dir or link of this module (``.tmp-…``) or a temp file of ``atomic_write_bytes`` (``.….tmp``)."""
    return name.startswith(TEMP_PREFIX) or (name.startswith(".") and name.endswith(".tmp"))


def _version_key(name: str) -> tuple[str, int]:
    match = VERSION_PATTERN.match(name)
    if not match:
        return ("", -1)
    return (match.group(1), int(match.group(2) or 0))


def _encoded(record: ExampleRecord) -> tuple[bytes, bytes]:
    """The record's ``dataset.json`` entry and ``provenance.jsonl`` line; DataError when not plain JSON."""
    try:
        return _encode(record.to_json()), _encode(record.provenance())
    except UnicodeEncodeError:
        raise DataError("not valid UTF-8 text (a lone surrogate escape)") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"not JSON-serialisable: {exc}") from None


def _encode(value: Any) -> bytes:
    """Compact UTF-8 JSON; TypeError/ValueError when the value is not plain JSON (NaN included)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


def _longest_string(value: Any) -> int:
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        return max((_longest_string(v) for v in [*value.keys(), *value.values()]), default=0)
    if isinstance(value, (list, tuple)):
        return max((_longest_string(v) for v in value), default=0)
    return 0


def _preview(record: Any) -> str:
    values = getattr(record, "values", record)
    try:
        text = json.dumps(values, default=str)
    except (TypeError, ValueError):
        text = repr(values)
    return text if len(text) <= 80 else text[:77] + "..."


def _compare(old: Mapping[str, int], new: Mapping[str, int]) -> dict[str, dict[str, int]]:
    return {key: {"old": int(old.get(key, 0)), "new": int(new.get(key, 0)),
                  "change": int(new.get(key, 0)) - int(old.get(key, 0))}
            for key in sorted(set(old) | set(new))}


def _read_json(path: Path) -> Any:
    with path.open("rb") as fh:
        return json.loads(fh.read().decode("utf-8"))


def _archived_metadata(sig_dir: Path, version: str) -> dict[str, Any]:
    with tarfile.open(sig_dir / _ARCHIVE / f"{version}.tar.gz", "r:gz") as tar:
        for member in tar:  # metadata.json is the first member
            if member.name == f"{version}/metadata.json" and member.isfile():
                handle = tar.extractfile(member)
                if handle is not None:
                    return json.loads(handle.read().decode("utf-8"))
            break
    raise ValueError("no metadata.json in the archive")
