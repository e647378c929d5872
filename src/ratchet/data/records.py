"""Training examples as they travel between collectors, validation, quality gates and the dataset store.

One example is one JSON object: the signature's input and output fields at the top
level, so every example file is also a plain labelled-data file (``ratchet eval
--data`` reads it), plus a ``_meta`` object with its provenance and scores::

    {"text": "Where is my card?", "intent": "card_arrival",
     "_meta": {"id": "3f1c…", "signature": "classify_intent", "source": "telemetry",
               "timestamp": "2026-11-25T12:00:00+00:00", "quality": 82.5, "difficulty": "easy",
               "category": "card_arrival", "split": "train",
               "metadata": {"request_id": "…", "latency_ms": 212, "cost_usd": 0.0, "model": "…"}}}

Batches are JSON Lines files. Readers skip and count malformed lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dspy

from ratchet.errors import DataError
from ratchet.hashing import sha256_hex
from ratchet.programs.schema import ProgramSchema
from ratchet.store.atomic import atomic_write_text
from ratchet.store.jsonl import JsonlReadStats

__all__ = [
    "DIFFICULTIES",
    "META_KEY",
    "ExampleRecord",
    "example_id",
    "input_hash",
    "read_batch",
    "utc_now",
    "write_batch",
]

META_KEY = "_meta"
DIFFICULTIES = ("easy", "medium", "hard")


def utc_now() -> str:
    """The current time as ISO 8601 UTC, seconds precision."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def input_hash(inputs: Mapping[str, Any]) -> str:
    """SHA-256 of the sorted-key JSON of the inputs: equal inputs, equal hash (seed 002's dedup key)."""
    return sha256_hex(json.dumps(dict(inputs), sort_keys=True, default=str))


def example_id(signature: str, inputs: Mapping[str, Any]) -> str:
    """A short stable id of an example: its signature and its inputs."""
    return sha256_hex(f"{signature}:{input_hash(inputs)}")[:16]


@dataclass
class ExampleRecord:
    """One labelled example with its provenance."""

    values: dict[str, Any]
    signature: str
    source: str
    timestamp: str = field(default_factory=utc_now)
    quality: float | None = None
    difficulty: str | None = None
    category: str | None = None
    split: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    id: str = ""

    def inputs(self, schema: ProgramSchema) -> dict[str, Any]:
        return {name: self.values[name] for name in schema.input_names if name in self.values}

    def outputs(self, schema: ProgramSchema) -> dict[str, Any]:
        return {name: self.values[name] for name in schema.output_names if name in self.values}

    def ensure_id(self, schema: ProgramSchema) -> str:
        """Set (and return) the id from the signature and the inputs."""
        self.id = example_id(self.signature, self.inputs(schema))
        return self.id

    def to_example(self, schema: ProgramSchema) -> dspy.Example:
        return dspy.Example(**{**self.inputs(schema), **self.outputs(schema)}).with_inputs(*schema.input_names)

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "signature": self.signature, "source": self.source,
                               "timestamp": self.timestamp}
        for key in ("quality", "difficulty", "category", "split"):
            value = getattr(self, key)
            if value is not None:
                out[key] = value
        if self.metadata:
            out["metadata"] = self.metadata
        return out

    def to_json(self) -> dict[str, Any]:
        return {**self.values, META_KEY: self.meta()}

    def provenance(self) -> dict[str, Any]:
        """The line this example gets in a dataset version's ``provenance.jsonl``."""
        return {"example_id": self.id, "source": self.source, "timestamp": self.timestamp,
                "quality_score": self.quality, "difficulty": self.difficulty, "category": self.category,
                "split": self.split, "metadata": self.metadata}

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, signature: str | None = None, source: str | None = None
                  ) -> ExampleRecord:
        """Read one example; ``signature``/``source`` fill in what ``_meta`` lacks. ValueError when unusable."""
        if not isinstance(data, Mapping):
            raise ValueError(f"an example must be a JSON object, got {type(data).__name__}")
        meta = data.get(META_KEY) or {}
        if not isinstance(meta, Mapping):
            raise ValueError(f"'{META_KEY}' must be an object")
        values = {k: v for k, v in data.items() if k != META_KEY}
        sig = meta.get("signature") or signature
        if not sig:
            raise ValueError("the example names no signature (give one)")
        quality = meta.get("quality")
        if quality is not None and (isinstance(quality, bool) or not isinstance(quality, (int, float))):
            raise ValueError(f"quality must be a number, got {quality!r}")
        difficulty = meta.get("difficulty")
        if difficulty is not None and difficulty not in DIFFICULTIES:
            raise ValueError(f"difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")
        metadata = meta.get("metadata") or {}
        if not isinstance(metadata, Mapping):
            raise ValueError("metadata must be an object")
        return cls(
            values=values,
            signature=str(sig),
            source=str(meta.get("source") or source or "manual"),
            timestamp=str(meta.get("timestamp") or utc_now()),
            quality=None if quality is None else float(quality),
            difficulty=difficulty,
            category=None if meta.get("category") is None else str(meta["category"]),
            split=meta.get("split"),
            metadata=dict(metadata),
            id=str(meta.get("id") or ""),
        )


def read_batch(paths: Path | Iterable[Path], *, signature: str | None = None, source: str | None = None,
               stats: JsonlReadStats | None = None) -> list[ExampleRecord]:
    """Examples from files or directories (every ``*.jsonl``/``*.json`` inside); bad lines are skipped and counted.

    ``signature``, when given, also drops examples of other signatures (counted as skipped).
    """
    from ratchet.data.files import read_records

    stats = stats if stats is not None else JsonlReadStats()
    records: list[ExampleRecord] = []
    for path in _files(paths):
        raw, file_stats = read_records(path)
        stats.lines += file_stats.lines
        stats.bad_lines += file_stats.bad_lines
        stats.errors.extend(file_stats.errors[: max(0, 20 - len(stats.errors))])
        for index, item in enumerate(raw, start=1):
            try:
                record = ExampleRecord.from_json(item, signature=signature, source=source)
            except ValueError as exc:
                stats.bad(f"{path.name}#{index}", str(exc))
                continue
            if signature is not None and record.signature != signature:
                stats.bad(f"{path.name}#{index}", f"example of signature '{record.signature}', not '{signature}'")
                continue
            stats.records += 1
            records.append(record)
    return records


def _files(paths: Path | Iterable[Path]) -> list[Path]:
    items = [Path(paths)] if isinstance(paths, (str, Path)) else [Path(p) for p in paths]
    files: list[Path] = []
    for item in items:
        if item.is_dir():
            files.extend(sorted(p for p in item.iterdir()
                                if p.is_file() and p.name.endswith((".jsonl", ".json", ".jsonl.gz"))
                                and not p.name.startswith(".")))
        elif item.is_file():
            files.append(item)
        else:
            raise DataError(f"{item}: no such file or directory")
    return files


def write_batch(path: Path, records: Iterable[ExampleRecord]) -> int:
    """Write examples as JSON Lines, atomically; returns how many."""
    lines = [json.dumps(r.to_json(), ensure_ascii=False, default=str) for r in records]
    atomic_write_text(path, "".join(line + "\n" for line in lines))
    return len(lines)
