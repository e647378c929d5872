"""The golden sets' store and the public API over it: :func:`add_golden`, :func:`load_golden`, the leakage rule.

:class:`GoldenStore` is the versioned dataset store (:class:`~ratchet.data.datasets.DatasetStore`)
rooted at ``<home>/golden`` instead of ``<home>/training_data``: the same immutable versions,
``latest`` pointer, lock, archive and audit trail, with two differences — an incoming example
*replaces* the stored one of equal inputs (the newer label wins) instead of being skipped, and
a batch is all-or-nothing (one invalid example stores nothing: a golden set is curated).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore, WriteResult
from ratchet.data.datasets.admit import clean_record
from ratchet.data.records import ExampleRecord, input_hash, utc_now
from ratchet.errors import DataError
from ratchet.programs.registry import ProgramRegistry
from ratchet.programs.schema import ProgramSchema

__all__ = [
    "PROVENANCE_KEYS",
    "GoldenExample",
    "GoldenStore",
    "add_golden",
    "golden_input_hashes",
    "load_golden",
    "without_golden",
]

PROVENANCE_KEYS = ("task_id", "annotator", "request_id")
"""Where a golden example came from, kept in its ``_meta.metadata`` (``request_id``: the served call it labels)."""


@dataclass(frozen=True)
class GoldenExample:
    """One golden example: the signature's input and output fields, and where the label came from."""

    values: dict[str, Any]
    task_id: str | None = None
    annotator: str | None = None
    request_id: str | None = None
    category: str | None = None
    source: str = ""
    note: str = ""
    id: str = ""
    added: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def inputs(self, schema: ProgramSchema) -> dict[str, Any]:
        return {name: self.values[name] for name in schema.input_names if name in self.values}

    def input_hash(self, schema: ProgramSchema) -> str:
        """The stable hash of the inputs (:func:`~ratchet.data.records.input_hash`), the leakage rule's key."""
        return input_hash(self.inputs(schema))

    def provenance(self) -> dict[str, Any]:
        return {"source": self.source, **{k: getattr(self, k) for k in PROVENANCE_KEYS}, "added": self.added,
                **({"note": self.note} if self.note else {})}

    def to_record(self, signature: str) -> ExampleRecord:
        metadata = {**self.extra, **{k: getattr(self, k) for k in PROVENANCE_KEYS if getattr(self, k) is not None}}
        if self.note:
            metadata["note"] = self.note
        return ExampleRecord(values=dict(self.values), signature=signature, source=self.source,
                             timestamp=self.added or utc_now(), category=self.category, metadata=metadata)

    @classmethod
    def from_record(cls, record: ExampleRecord) -> GoldenExample:
        meta = dict(record.metadata or {})
        known = {k: None if meta.get(k) is None else str(meta.pop(k)) for k in PROVENANCE_KEYS}
        return cls(values=dict(record.values), category=record.category, source=record.source,
                   note=str(meta.pop("note", "") or ""), id=record.id, added=record.timestamp, extra=meta, **known)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], signature: str, source: str = "") -> GoldenExample:
        """From an example file's object (fields, plus an optional ``_meta`` whose ``metadata`` holds provenance);
        ``source`` when ``_meta`` names none. ValueError when unusable."""
        return cls.from_record(ExampleRecord.from_json(data, signature=signature, source=source or None))


class GoldenStore(DatasetStore):
    """Every signature's golden versions under ``<home>/golden/<signature>/`` (the training store's layout)."""

    DIRECTORY = "golden"
    KIND = "golden"

    def add(self, signature: str, records: Iterable[ExampleRecord], *, source: str, notes: str = "") -> WriteResult:
        """A new version: latest's examples with these added; one of equal inputs replaces the stored one.

        Every example is validated against the signature first; if any is invalid, nothing is
        stored and the DataError names each bad example's position and field.
        """
        spec = self._spec(signature)
        batch = list(records)
        errors = []
        for index, record in enumerate(batch, start=1):
            try:
                clean_record(spec, record, source or "golden", self.settings)
            except DataError as exc:
                errors.append(f"#{index}: {exc}")
        if errors:
            more = f"; … {len(errors) - 5} more" if len(errors) > 5 else ""
            raise DataError(f"{len(errors)} of {len(batch)} golden example(s) of '{signature}' are invalid, "
                            f"nothing stored: {'; '.join(errors[:5])}{more}")
        return self._write(signature, batch, source=source, notes=notes, incremental=True, replace=True)

    def create(self, signature: str, records: Iterable[ExampleRecord], *, source: str, notes: str = ""
               ) -> WriteResult:
        raise DataError("a golden set only grows by versions of `add` (examples of equal inputs are relabelled)")

    def examples(self, signature: str, version: str = "latest") -> list[GoldenExample]:
        """The examples of a version (latest by default); empty when the signature has no golden set yet."""
        if version == "latest" and self.latest_version(signature) is None:
            return []
        return [GoldenExample.from_record(r) for r in self.load(signature, version).records]


def _store(settings: Settings, registry: ProgramRegistry | None) -> GoldenStore:
    if registry is None:
        from ratchet.programs import load_programs

        registry = load_programs(settings)
    return GoldenStore(Path(settings.home_dir), settings.data, registry=registry)


def add_golden(settings: Settings, signature: str, examples: Iterable[GoldenExample | Mapping[str, Any]], *,
               source: str, note: str = "", registry: ProgramRegistry | None = None) -> str:
    """Commit a new golden version of ``signature`` with ``examples`` added; returns the version name.

    An example whose inputs (by input hash) are already golden replaces the stored one: the
    newer label wins. ``source`` names where the batch came from (``annotation``, ``file``…);
    an example's own ``source`` wins. Raises DataError, naming the field, if any example is
    invalid (nothing is stored then).
    """
    store = _store(settings, registry)
    items = []
    for index, example in enumerate(examples, start=1):
        try:
            items.append(example if isinstance(example, GoldenExample)
                         else GoldenExample.from_json(example, signature, source))
        except ValueError as exc:
            raise DataError(f"golden example #{index} of '{signature}': {exc}; nothing stored") from None
    if not items:
        raise DataError(f"no golden examples given for '{signature}'; nothing stored")
    records = [e.to_record(signature) for e in items]
    return store.add(signature, records, source=source, notes=note).version


def load_golden(settings: Settings, signature: str, *, registry: ProgramRegistry | None = None
                ) -> list[GoldenExample]:
    """The latest golden version's examples of ``signature`` with their provenance; empty when there is none."""
    return _store(settings, registry).examples(signature)


def golden_input_hashes(settings: Settings, signature: str, *, registry: ProgramRegistry | None = None
                        ) -> set[str]:
    """The input hashes of ``signature``'s latest golden set (empty when it has none)."""
    store = _store(settings, registry)
    schema = store.registry.get(signature).schema
    return {e.input_hash(schema) for e in store.examples(signature)}


def without_golden(records: Sequence[ExampleRecord], golden_hashes: set[str], schema: ProgramSchema
                   ) -> tuple[list[ExampleRecord], int]:
    """The leakage rule: ``records`` minus those whose input hash is golden, and how many were left out."""
    if not golden_hashes:
        return list(records), 0
    kept = [r for r in records if input_hash(r.inputs(schema)) not in golden_hashes]
    return kept, len(records) - len(kept)
