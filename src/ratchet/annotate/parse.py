"""Reading ``field=value`` pairs (the CLI's ``--set``) into typed output values of a signature."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ratchet.annotate.model import AnnotationError
from ratchet.errors import InputValidationError
from ratchet.programs.schema import FieldSpec, ProgramSchema

__all__ = ["allowed_labels", "parse_assignments"]


def allowed_labels(schema: ProgramSchema) -> dict[str, list[Any]]:
    """Output field → its allowed values, for every ``Literal`` output field."""
    return {f.name: list(f.choices) for f in schema.outputs if f.choices}


def parse_assignments(schema: ProgramSchema, pairs: Iterable[str]) -> dict[str, Any]:
    """``["intent=card_arrival", "confidence=0.9"]`` → values parsed by each output field's type.

    Text and text labels stay as written; other types are read as JSON (``3``, ``true``, ``["a"]``), falling back
    to the raw text so validation can name the field and the type it expected. ``null`` clears an optional field.
    The values are not validated here (``submit`` does that against the whole output).
    """
    fields = {f.name: f for f in schema.outputs}
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise AnnotationError(f"--set takes field=value, got {pair!r}")
        spec = fields.get(name)
        if spec is None:
            raise InputValidationError(f"unknown output field '{name}' (expected: {', '.join(fields)})", field=name)
        if name in values:
            raise AnnotationError(f"--set gives field '{name}' twice")
        values[name] = _parse(spec, raw)
    return values


def _parse(spec: FieldSpec, raw: str) -> Any:
    if spec.optional and raw.strip() in ("null", "None"):
        return None
    return spec.parse_text(raw)
