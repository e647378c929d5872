"""What the store hands back: a write's result and its rejections, a version's summary, a loaded version.

Plain dataclasses with ``to_dict`` for the CLI's ``--json`` output; they read the
metadata a version was written with and never touch the disk themselves.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dspy

from ratchet.data.datasets.layout import version_key
from ratchet.data.records import ExampleRecord
from ratchet.programs.schema import ProgramSchema

__all__ = ["DatasetVersion", "Rejection", "VersionInfo", "WriteResult"]


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
    replaced: list[str] = field(default_factory=list)  # ids whose example an incoming one replaced (golden sets)

    @property
    def skipped_duplicates(self) -> int:
        return len(self.duplicates)

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "version": self.version, "parent": self.parent,
                "path": str(self.path), "example_count": self.example_count, "added": self.added,
                "skipped_duplicates": self.skipped_duplicates, "duplicate_ids": self.duplicates[:20],
                "rejected": len(self.rejected), "rejections": [r.to_dict() for r in self.rejected[:50]],
                **({"replaced": len(self.replaced)} if self.replaced else {})}


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
        """When the version was made (from its metadata, else from its name); a time without a zone is UTC."""
        with contextlib.suppress(KeyError, ValueError):
            created = datetime.fromisoformat(str(self.metadata["created"]))
            return created if created.tzinfo is not None else created.replace(tzinfo=UTC)
        stamp = version_key(self.version)[0] or "00010101_000000"
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

    def summary(self) -> dict[str, Any]:
        """What ``ratchet dataset load`` shows of the version: lineage, counts, splits, statistics, hash."""
        meta = self.metadata
        return {"signature": self.signature, "version": self.version, "path": str(self.path),
                "created": meta.get("created"), "parent": meta.get("parent"), "notes": meta.get("notes", ""),
                "split": self.split, "examples": len(self.records), "example_count": meta.get("example_count"),
                "split_counts": meta.get("split_counts"), "statistics": meta.get("statistics", {}),
                "content_sha256": meta.get("content_sha256")}

    def to_examples(self, schema: ProgramSchema, split: str | None = None) -> list[dspy.Example]:
        """``dspy.Example`` objects (inputs marked) for an optimizer or ``Evaluate``."""
        records = self.records if split is None else self.by_split(split)
        return [r.to_example(schema) for r in records]
