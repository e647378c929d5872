"""The data validator: schema, quality score, difficulty, category, exact and near-duplicate removal.

Examples are taken one by one, in order; the first of a group of duplicates is kept,
later ones are rejected with the kept example's id (and the similarity). Each accepted
example gets its id, a 0–100 quality score with its components
(``_meta.metadata["quality_components"]``, formula in :mod:`ratchet.data.quality`), a
difficulty and a category (both kept when the example brings them). Rejections carry
a code (``schema``, ``too_long``, ``empty_input``, ``wrong_signature``,
``exact_duplicate``, ``near_duplicate``) and a reason a person can act on.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ratchet.config.settings import DataSettings
from ratchet.data.dedup import Deduplicator, Sketch, input_text
from ratchet.data.quality import QualityScorer, is_filled
from ratchet.data.records import ExampleRecord, example_id, input_hash
from ratchet.errors import InputValidationError
from ratchet.hashing import canonical_json, sha256_hex
from ratchet.programs.registry import ProgramSpec

__all__ = [
    "Rejection",
    "SchemaProblem",
    "ValidationReport",
    "ValidationResult",
    "Validator",
    "check_schema",
    "summarize",
    "validate_examples",
]

BLOCK = 1024  # examples per step: schema checks, then one vectorised sketch pass, then admission
Progress = Callable[[int], None]


@dataclass
class Rejection:
    """An example that was not accepted, and why."""

    record: ExampleRecord
    code: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        """The example as it was read, with ``rejection_reason``/``rejection_code`` in its metadata."""
        metadata = {**self.record.metadata, "rejection_reason": self.reason, "rejection_code": self.code}
        return replace(self.record, metadata=metadata).to_json()


@dataclass
class ValidationReport:
    """Counts and distributions of one validation run of one signature."""

    signature: str
    examples: int = 0
    accepted: int = 0
    rejected: int = 0
    rejections: dict[str, int] = field(default_factory=dict)
    quality: dict[str, float | None] = field(default_factory=dict)
    difficulty: dict[str, int] = field(default_factory=dict)
    categories: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)
    seeded: int = 0
    seconds: float = 0.0

    @property
    def duplicate_rate(self) -> float:
        duplicates = self.rejections.get("exact_duplicate", 0) + self.rejections.get("near_duplicate", 0)
        return duplicates / self.examples if self.examples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "examples": self.examples, "accepted": self.accepted,
                "rejected": self.rejected, "rejections": self.rejections,
                "duplicate_rate": round(self.duplicate_rate, 4), "quality": self.quality,
                "difficulty": self.difficulty, "categories": self.categories, "sources": self.sources,
                "seeded": self.seeded, "seconds": round(self.seconds, 3)}


@dataclass
class ValidationResult:
    """Accepted examples (scored), rejected ones (with reasons) and the report."""

    accepted: list[ExampleRecord]
    rejected: list[Rejection]
    report: ValidationReport


def _size(value: Any) -> int:
    return len(value) if isinstance(value, str) else len(json.dumps(value, default=str))


@dataclass(frozen=True)
class SchemaProblem:
    """Why an example does not fit its signature: a rejection code, a message and the field."""

    code: str
    message: str
    field: str | None = None


def check_schema(values: Mapping[str, Any], spec: ProgramSpec, max_field_chars: int) -> dict[str, Any] | SchemaProblem:
    """The example's fields checked against the signature and coerced to its types, or the problem.

    Codes: ``schema`` (unknown or missing field, wrong type or choice), ``too_long``
    (a value over ``max_field_chars``), ``empty_input`` (a required input is blank).
    """
    schema = spec.schema
    known = (*schema.input_names, *schema.output_names)
    unknown = [name for name in values if name not in known]
    if unknown:
        return SchemaProblem("schema", f"unknown field '{unknown[0]}' (expected: {', '.join(known)})", unknown[0])
    for name, value in values.items():
        if value is not None and (size := _size(value)) > max_field_chars:
            return SchemaProblem("too_long", f"field '{name}' has {size:,} characters "
                                 f"(max_field_chars {max_field_chars:,})", name)
    try:
        inputs = schema.validate_inputs({k: values[k] for k in schema.input_names if k in values})
        outputs = schema.validate_outputs({k: values[k] for k in schema.output_names if k in values})
    except InputValidationError as exc:
        return SchemaProblem("schema", str(exc), exc.field)
    for spec_field in schema.inputs:
        if not spec_field.optional and not is_filled(inputs.get(spec_field.name)):
            return SchemaProblem("empty_input", f"required input '{spec_field.name}' is empty", spec_field.name)
    return {**inputs, **outputs}


class Validator:
    """Validates examples of one signature, one by one, deduplicating against all accepted so far."""

    def __init__(self, spec: ProgramSpec, settings: DataSettings | None = None) -> None:
        self.spec = spec
        self.settings = settings or DataSettings()
        self.dedup = Deduplicator.from_settings(self.settings)
        self.scorer = QualityScorer(spec)
        self.seeded = 0
        self._input_names = spec.schema.input_names
        self._output_names = spec.schema.output_names

    def seed(self, records: Iterable[ExampleRecord]) -> int:
        """Deduplicate later examples against these too (e.g. the latest dataset version); returns how many."""
        schema = self.spec.schema
        rows = []
        for record in records:
            inputs = record.inputs(schema)
            rows.append((record.id or example_id(self.spec.name, inputs), input_hash(inputs),
                         input_text(inputs, schema), _outputs_hash(record.outputs(schema))))
        added = self.dedup.add_many(rows)
        self.seeded += added
        return added

    def check(self, record: ExampleRecord) -> ExampleRecord | Rejection:
        """Validate one example: the accepted copy (scored) or a rejection. Accepted ones join the dedup index."""
        staged = self._schema(record)
        if isinstance(staged, Rejection):
            return staged
        sketch = self.dedup.index.sketch(input_text(staged[0].values, self.spec.schema))
        return self._admit(*staged, sketch)

    def validate(self, records: Sequence[ExampleRecord], *, on_progress: Progress | None = None) -> ValidationResult:
        """Validate a batch in order; ``on_progress(n)`` is called as each block of examples is done."""
        started = time.perf_counter()
        accepted: list[ExampleRecord] = []
        rejected: list[Rejection] = []
        schema = self.spec.schema
        for start in range(0, len(records), BLOCK):
            block = records[start : start + BLOCK]
            staged: list[tuple[ExampleRecord, str]] = []
            for record in block:
                checked = self._schema(record)
                if isinstance(checked, Rejection):
                    rejected.append(checked)
                else:
                    staged.append(checked)
            sketches = self.dedup.index.sketches([input_text(r.values, schema, self._input_names) for r, _ in staged])
            for (record, digest), sketch in zip(staged, sketches, strict=True):
                outcome = self._admit(record, digest, sketch)
                if isinstance(outcome, Rejection):
                    rejected.append(outcome)
                else:
                    accepted.append(outcome)
            if on_progress is not None:
                on_progress(len(block))
        report = summarize(self.spec.name, len(records), accepted, rejected, seeded=self.seeded,
                           seconds=time.perf_counter() - started)
        return ValidationResult(accepted, rejected, report)

    def _schema(self, record: ExampleRecord) -> tuple[ExampleRecord, str] | Rejection:
        """A copy with checked values and its inputs' hash, or the rejection."""
        copy = replace(record, metadata=dict(record.metadata))
        if record.signature != self.spec.name:
            return Rejection(copy, "wrong_signature",
                             f"example of signature '{record.signature}', not '{self.spec.name}'")
        checked = check_schema(record.values, self.spec, self.settings.max_field_chars)
        if isinstance(checked, SchemaProblem):
            if not copy.id:
                copy.id = example_id(self.spec.name, record.inputs(self.spec.schema))
            return Rejection(copy, checked.code, checked.message)
        copy.values = checked
        digest = input_hash({k: checked[k] for k in self._input_names if k in checked})
        if not copy.id:
            copy.id = sha256_hex(f"{self.spec.name}:{digest}")[:16]  # = example_id(), without hashing twice
        return copy, digest

    def _admit(self, record: ExampleRecord, digest: str, sketch: Sketch) -> ExampleRecord | Rejection:
        outputs = _outputs_hash({k: record.values.get(k) for k in self._output_names})
        match, similarity = self.dedup.check(digest, sketch, outputs)
        if match is not None:
            return Rejection(record, match.code, match.reason)
        score = self.scorer.score(record.values, similarity=similarity)
        if record.quality is not None:
            record.metadata["source_quality"] = record.quality
        record.quality = score.total
        record.metadata["quality_components"] = score.components()
        record.difficulty = record.difficulty or self.scorer.difficulty(record.values)
        record.category = record.category or self.spec.category(record.values)
        self.dedup.add(record.id, digest, sketch, outputs)
        return record


def _outputs_hash(outputs: Mapping[str, Any]) -> str:
    return sha256_hex(canonical_json({k: v for k, v in outputs.items() if v is not None}))


def _p10(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.1 * len(ordered)) - 1)]


def summarize(signature: str, examples: int, accepted: Sequence[ExampleRecord], rejected: Sequence[Rejection],
              *, seeded: int = 0, seconds: float = 0.0) -> ValidationReport:
    """The report of a validation run."""
    scores = [r.quality for r in accepted if r.quality is not None]
    quality: dict[str, float | None] = {"mean": None, "min": None, "p10": None, "max": None}
    if scores:
        quality = {"mean": round(sum(scores) / len(scores), 1), "min": min(scores), "p10": _p10(scores),
                   "max": max(scores)}
    return ValidationReport(
        signature=signature,
        examples=examples,
        accepted=len(accepted),
        rejected=len(rejected),
        rejections=dict(Counter(r.code for r in rejected).most_common()),
        quality=quality,
        difficulty=dict(Counter(r.difficulty for r in accepted if r.difficulty).most_common()),
        categories=dict(Counter(r.category for r in accepted if r.category).most_common()),
        sources=dict(Counter(r.source for r in accepted).most_common()),
        seeded=seeded,
        seconds=seconds,
    )


def validate_examples(records: Sequence[ExampleRecord], spec: ProgramSpec, settings: DataSettings | None = None,
                      *, existing: Iterable[ExampleRecord] = (), on_progress: Progress | None = None
                      ) -> ValidationResult:
    """Validate a batch of one signature, deduplicating also against ``existing`` examples."""
    validator = Validator(spec, settings)
    validator.seed(existing)
    return validator.validate(records, on_progress=on_progress)
