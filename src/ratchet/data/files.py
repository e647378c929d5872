"""Read labelled examples from JSON Lines, JSON or CSV files into ``dspy.Example`` objects."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from ratchet.errors import DataError, InputValidationError
from ratchet.programs.registry import ProgramSpec
from ratchet.programs.schema import ProgramSchema
from ratchet.store.jsonl import JsonlReadStats, iter_jsonl, open_text_lines

__all__ = ["LoadedExamples", "labelled_examples", "load_examples", "read_records"]


@dataclass
class LoadedExamples:
    """Examples read from a file, and what was skipped (with the first reasons)."""

    path: Path
    examples: list[dspy.Example] = field(default_factory=list)
    stats: JsonlReadStats = field(default_factory=JsonlReadStats)

    @property
    def skipped(self) -> int:
        return self.stats.bad_lines

    @property
    def errors(self) -> list[str]:
        return self.stats.errors


def read_records(path: str | Path) -> tuple[list[dict[str, Any]], JsonlReadStats]:
    """Raw objects from ``.jsonl``/``.jsonl.gz`` (bad lines skipped and counted), ``.json`` or ``.csv``."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file")
    name = path.name.removesuffix(".gz")
    stats = JsonlReadStats()
    if name.endswith(".jsonl"):
        return list(iter_jsonl(path, stats)), stats
    raw = b"".join(open_text_lines(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not valid UTF-8 (byte {exc.start})") from None
    if name.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        stats.lines = stats.records = len(rows)
        return rows, stats
    if name.endswith(".json"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
        if isinstance(value, dict) and isinstance(value.get("examples"), list):
            value = value["examples"]
        if not isinstance(value, list):
            raise DataError(f"{path}: expected a JSON list of examples or an object with an 'examples' list")
        records = []
        for index, item in enumerate(value):
            if isinstance(item, dict):
                records.append(item)
            else:
                stats.bad(f"{path.name}[{index}]", f"expected an object, got {type(item).__name__}")
        stats.lines, stats.records = len(value), len(records)
        return records, stats
    raise DataError(f"{path}: unsupported file type (use .jsonl, .jsonl.gz, .json or .csv)")


def load_examples(path: str | Path, schema: ProgramSchema, *, require_outputs: bool = True) -> LoadedExamples:
    """Examples whose fields match ``schema``; rows that do not are skipped with a reason.

    Extra keys in a row (ids, metadata) are ignored. With ``require_outputs`` every
    non-optional output field must be present (a label to score against).
    """
    records, stats = read_records(path)
    loaded = LoadedExamples(path=Path(path), stats=stats)
    outputs = set(schema.output_names)
    for index, record in enumerate(records, start=1):
        where = f"{Path(path).name}#{index}"
        inputs = {k: record[k] for k in schema.input_names if k in record}
        labels = {k: record[k] for k in outputs if k in record}
        try:
            inputs = schema.validate_inputs(inputs)
            if require_outputs or labels:
                labels = schema.validate_outputs(labels)
        except InputValidationError as exc:
            stats.bad(where, str(exc))
            continue
        loaded.examples.append(dspy.Example(**inputs, **labels).with_inputs(*schema.input_names))
    return loaded


def labelled_examples(spec: ProgramSpec, path: str | Path | None = None, *, split: str = "test") -> LoadedExamples:
    """A program's labelled examples from ``path``, else its bundled ``split``; an error when none are usable."""
    source = path or spec.data.get(split)
    if source is None:
        raise DataError(f"program '{spec.name}' has no bundled {split} data; pass a file of labelled examples")
    loaded = load_examples(source, spec.schema)
    if not loaded.examples:
        reasons = "; ".join(loaded.errors[:3])
        raise DataError(f"{source}: no usable examples ({loaded.skipped} skipped: {reasons})")
    return loaded
