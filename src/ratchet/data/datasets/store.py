"""The store itself: :class:`DatasetStore`, the one API over every signature's versions.

It checks names against the program registry, takes the signature's lock where a
version is written, archived or restored, and leaves the work to the modules below it:
``admit`` (validating incoming examples), ``commit`` (writing a version atomically),
``read`` and ``archive`` (loading and packing versions) and ``diff``.
"""

from __future__ import annotations

import tarfile
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ratchet.audit import audited
from ratchet.config.settings import DataSettings
from ratchet.data.datasets.admit import accept_records, encoded
from ratchet.data.datasets.archive import archive_version, archived_metadata
from ratchet.data.datasets.commit import commit_version, sweep_temp_entries
from ratchet.data.datasets.diff import DatasetDiff, diff_versions
from ratchet.data.datasets.layout import LATEST, checked_name, latest_name, read_json, version_key, version_names
from ratchet.data.datasets.lock import locked
from ratchet.data.datasets.read import previous_splits, read_version, resolve_version
from ratchet.data.datasets.results import DatasetVersion, VersionInfo, WriteResult
from ratchet.data.datasets.splits import SPLITS
from ratchet.data.gates import GateReport, gate_thresholds, run_gates
from ratchet.data.records import ExampleRecord, write_batch
from ratchet.errors import DataError
from ratchet.programs.registry import NAME_PATTERN, REGISTRY, ProgramRegistry, ProgramSpec
from ratchet.store.private import make_private_dir

__all__ = ["DatasetStore"]


class DatasetStore:
    """Versioned training data of every signature under ``<home>/training_data``.

    A subclass may keep another kind of dataset in the same layout under another root
    (``DIRECTORY``), audited under its own name (``KIND``): the golden sets do.
    """

    DIRECTORY = "training_data"
    KIND = "dataset"

    def __init__(self, home: Path, settings: DataSettings, *, registry: ProgramRegistry | None = None) -> None:
        self.root = Path(home) / self.DIRECTORY
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
        with locked(sig_dir), audited(self.root.parent, f"{self.KIND}.archive", target=signature,
                                      details={"older_than_days": days, "keep": keep}) as note:
            infos = self.list_versions(signature)
            protected = {i.version for i in infos[max(0, len(infos) - keep):]} if keep else set()
            protected |= {i.version for i in infos if i.latest}
            chosen = [i for i in infos if not i.archived and i.version not in protected and i.created < cutoff]
            note.skip = dry_run or not chosen  # only what changed the store is recorded
            if not dry_run:
                for info in chosen:
                    archive_version(sig_dir, info.version)
                    info.archived = True
                    note.details["versions"] = [i.version for i in chosen if i.archived]
        return chosen

    def sweep_temp(self, max_age_s: float = 3600, *, signature: str | None = None, dry_run: bool = False
                   ) -> list[Path]:
        """Remove leftovers of interrupted writers (``.tmp-*``, ``.*.tmp``) older than ``max_age_s``; returns them
        (with ``dry_run``, what would be removed)."""
        if signature is not None:
            sig_dirs = [self.root / checked_name(signature)]
        elif self.root.is_dir():
            sig_dirs = [p for p in self.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)]
        else:
            sig_dirs = []
        return sweep_temp_entries(sig_dirs, max_age_s, dry_run=dry_run)

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
    def load(self, signature: str, version: str = LATEST, split: str | None = None, *, restore: bool = True
             ) -> DatasetVersion:
        """A version's records and metadata; an archived version is restored from its archive first (without
        ``restore``, it is a DataError: a reader that must not change the store)."""
        if split is not None and split not in SPLITS:
            raise DataError(f"unknown split '{split}' (use {', '.join(SPLITS)})")
        self._spec(signature)
        name = resolve_version(self.root / signature, signature, version)
        dataset = read_version(self.root / signature, signature, name, restore=restore)
        if split is not None:
            dataset.records = dataset.by_split(split)
            dataset.split = split
        return dataset

    def latest_version(self, signature: str) -> str | None:
        """The version ``latest`` points at (the newest complete one if the link is missing), or None."""
        self._spec(signature)
        return latest_name(self.root / signature)

    def list_versions(self, signature: str) -> list[VersionInfo]:
        """Every version, oldest first, live and archived."""
        self._spec(signature)
        sig_dir = self.root / signature
        latest = latest_name(sig_dir)
        infos = []
        for name, archived in sorted(version_names(sig_dir).items(), key=lambda item: version_key(item[0])):
            try:
                meta = archived_metadata(sig_dir, name) if archived else read_json(sig_dir / name / "metadata.json")
            except (OSError, ValueError, tarfile.TarError, EOFError) as exc:
                meta = {"error": f"unreadable metadata: {exc}"}
            infos.append(VersionInfo(signature, name, meta if isinstance(meta, dict) else {}, archived=archived,
                                     latest=name == latest))
        return infos

    def diff(self, signature: str, v1: str, v2: str, *, sample: int = 5, restore: bool = True) -> DatasetDiff:
        """Ids added/removed/changed from ``v1`` to ``v2``, count, quality and distribution changes."""
        old, new = self.load(signature, v1, restore=restore), self.load(signature, v2, restore=restore)
        return diff_versions(signature, old, new, sample=sample)

    def gates(self, signature: str, version: str = LATEST, *, restore: bool = True) -> GateReport:
        """The quality gates (``ratchet data gate``'s checks, the signature's thresholds) run on a stored version."""
        dataset = self.load(signature, version, restore=restore)
        return run_gates(dataset.records, gate_thresholds(signature, self.settings), signature=signature)

    # -- internals ----------------------------------------------------------------------------
    def _write(self, signature: str, records: Iterable[ExampleRecord], *, source: str, notes: str,
               incremental: bool, replace: bool = False) -> WriteResult:
        """Validate and commit; with ``replace`` (incremental only) an incoming example replaces latest's example
        of equal inputs (equal id) instead of being skipped as a duplicate."""
        spec = self._spec(signature)
        if not isinstance(source, str) or not source.strip():
            raise DataError("a source name is required (e.g. git_mining, synthetic, telemetry)")
        sig_dir = self.root / signature
        make_private_dir(sig_dir)
        action = f"{self.KIND}.add" if incremental else f"{self.KIND}.create"
        with locked(sig_dir), audited(self.root.parent, action, target=signature,
                                      details={"source": source.strip()}) as note:
            self.sweep_temp(signature=signature)
            parent = latest_name(sig_dir)
            base = read_version(sig_dir, signature, parent, restore=False).records if incremental and parent else []
            base_rows = [(r, *encoded(r)) for r in base]
            previous = {} if incremental else previous_splits(sig_dir, parent)
            seen = set() if replace else {r.id for r in base}
            accepted, duplicates, rejected = accept_records(spec, records, source.strip(), seen, previous,
                                                            self.settings)
            incoming = {row[0].id for row in accepted}
            replaced = [row[0].id for row in base_rows if row[0].id in incoming]
            base_rows = [row for row in base_rows if row[0].id not in incoming]
            if not accepted:
                reasons = "; ".join(f"#{r.index}: {r.reason}" for r in rejected[:3])
                what = (f"{len(rejected)} rejected ({reasons})" if rejected else
                        f"all {len(duplicates)} already in {parent}" if duplicates else "none given")
                raise DataError(f"no acceptable examples for '{signature}': {what}; nothing stored")
            operation = {"kind": "add" if incremental else "create", "source": source.strip(),
                         "added": len(accepted) - len(replaced), "skipped_duplicates": len(duplicates),
                         "rejected": len(rejected), **({"replaced": len(replaced)} if replace else {})}
            version = commit_version(sig_dir, signature, base_rows + accepted, parent=parent if incremental else None,
                                     notes=notes, operation=operation)
            note.details.update(version=version, parent=parent if incremental else None, examples=len(base_rows)
                                + len(accepted), added=len(accepted) - len(replaced), duplicates=len(duplicates),
                                rejected=len(rejected), **({"replaced": len(replaced)} if replace else {}))
        return WriteResult(signature=signature, version=version, parent=parent if incremental else None,
                           path=sig_dir / version, example_count=len(base_rows) + len(accepted),
                           added=len(accepted) - len(replaced), duplicates=duplicates, rejected=rejected,
                           replaced=replaced)

    def _spec(self, signature: str) -> ProgramSpec:
        return self.registry.get(checked_name(signature))

    def _sig_dir(self, signature: str) -> Path:
        self._spec(signature)
        return self.root / signature
