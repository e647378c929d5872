"""Admitting incoming examples into a new version: validate, skip known ids, assign the split, encode.

Each example is checked against its program's schema and the field-size limit, gets its
id, source and category, keeps the split it had in the parent version (else a stable
hash of its inputs), and is encoded once into its ``dataset.json`` entry and
``provenance.jsonl`` line. An unusable example becomes a :class:`Rejection` with the
reason; it never stops the rest of the batch.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ratchet.config.settings import DataSettings
from ratchet.data.datasets.layout import encode
from ratchet.data.datasets.results import Rejection
from ratchet.data.datasets.splits import assign_split
from ratchet.data.records import ExampleRecord
from ratchet.errors import DataError
from ratchet.programs.registry import ProgramSpec

__all__ = ["Row", "accept_records", "clean_record", "encoded"]

Row = tuple[ExampleRecord, bytes, bytes]  # a record, its dataset.json entry and its provenance line


def accept_records(spec: ProgramSpec, records: Iterable[ExampleRecord], source: str, seen: set[str],
                   previous_splits: dict[str, str | None], settings: DataSettings
                   ) -> tuple[list[Row], list[str], list[Rejection]]:
    """Validated, split and encoded new examples; ids already seen; rejections with reasons."""
    accepted: list[Row] = []
    duplicates: list[str] = []
    rejected: list[Rejection] = []
    seen = set(seen)
    for index, record in enumerate(records, start=1):
        try:
            clean = clean_record(spec, record, source, settings)
            if clean.id in seen:
                duplicates.append(clean.id)
                continue
            clean.split = previous_splits.get(clean.id) or assign_split(clean.inputs(spec.schema),
                                                                        settings.split_ratios)
            row = (clean, *encoded(clean))
        except DataError as exc:
            rejected.append(Rejection(index, str(exc), _preview(record)))
            continue
        seen.add(clean.id)
        accepted.append(row)
    return accepted, duplicates, rejected


def clean_record(spec: ProgramSpec, record: ExampleRecord, source: str, settings: DataSettings) -> ExampleRecord:
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
        if longest > settings.max_field_chars:
            raise DataError(f"field '{name}' has a value of {longest} characters "
                            f"(max_field_chars = {settings.max_field_chars})")
    clean = replace(record, values=clean_values, source=record.source or source,
                    metadata=dict(record.metadata or {}))
    clean.ensure_id(schema)
    if clean.category is None:
        with contextlib.suppress(Exception):  # a user's category function must not block the data
            clean.category = spec.category(clean_values)
    return clean


def encoded(record: ExampleRecord) -> tuple[bytes, bytes]:
    """The record's ``dataset.json`` entry and ``provenance.jsonl`` line; DataError when not plain JSON."""
    try:
        return encode(record.to_json()), encode(record.provenance())
    except UnicodeEncodeError:
        raise DataError("not valid UTF-8 text (a lone surrogate escape)") from None
    except (TypeError, ValueError) as exc:
        raise DataError(f"not JSON-serialisable: {exc}") from None


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
