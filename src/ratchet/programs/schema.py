"""Input/output schema of a program, read off its DSPy signature.

The schema is what serving validates requests against and what the data
pipeline validates examples against: field names, roles, types, choices.
"""

from __future__ import annotations

import json
import types
import typing
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import dspy
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from ratchet.errors import InputValidationError

__all__ = ["FieldSpec", "ProgramSchema", "type_name"]


def type_name(annotation: Any) -> str:
    """A short readable name for a type annotation (``str``, ``list[str]``, ``Literal['a', 'b']``)."""
    if annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return "Literal[" + ", ".join(repr(a) for a in typing.get_args(annotation)) + "]"
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(annotation, "__name__", str(annotation))


@dataclass(frozen=True)
class FieldSpec:
    """One field of a signature."""

    name: str
    role: Literal["input", "output"]
    annotation: Any
    description: str = ""
    prefix: str = ""

    @property
    def type(self) -> str:
        return type_name(self.annotation)

    @property
    def optional(self) -> bool:
        origin = typing.get_origin(self.annotation)
        return origin in (typing.Union, types.UnionType) and type(None) in typing.get_args(self.annotation)

    @property
    def base_annotation(self) -> Any:
        """The annotation without ``| None``."""
        if not self.optional:
            return self.annotation
        rest = [a for a in typing.get_args(self.annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else typing.Union[tuple(rest)]  # noqa: UP007

    @property
    def choices(self) -> tuple[str, ...]:
        """Allowed values for a ``Literal`` field, else empty."""
        base = self.base_annotation
        if typing.get_origin(base) is Literal:
            return tuple(str(a) for a in typing.get_args(base))
        return ()

    def parse_text(self, raw: str) -> Any:
        """A value typed on a command line (``field=value``): text and text labels as written, anything else read
        as JSON (``3``, ``true``, ``["a"]``), falling back to the raw text so validation can name what it expected."""
        base = self.base_annotation
        text_labels = typing.get_origin(base) is Literal and all(isinstance(c, str) for c in typing.get_args(base))
        if base is str or text_labels:
            return raw
        try:
            return json.loads(raw)
        except ValueError:
            return raw

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "role": self.role, "type": self.type}
        if self.description:
            out["description"] = self.description
        if self.choices:
            out["choices"] = list(self.choices)
        return out


def _description(info: Any, name: str) -> str:
    extra = info.json_schema_extra or {}
    desc = str(extra.get("desc", "") or "")
    return "" if desc == f"${{{name}}}" else desc


@dataclass(frozen=True)
class ProgramSchema:
    """Input and output fields of a DSPy signature."""

    inputs: tuple[FieldSpec, ...]
    outputs: tuple[FieldSpec, ...]
    instructions: str = ""

    @classmethod
    def from_signature(cls, signature: type[dspy.Signature]) -> ProgramSchema:
        def specs(fields: dict[str, Any], role: Literal["input", "output"]) -> tuple[FieldSpec, ...]:
            return tuple(
                FieldSpec(
                    name=name,
                    role=role,
                    annotation=info.annotation,
                    description=_description(info, name),
                    prefix=str((info.json_schema_extra or {}).get("prefix", "")),
                )
                for name, info in fields.items()
            )

        return cls(
            inputs=specs(signature.input_fields, "input"),
            outputs=specs(signature.output_fields, "output"),
            instructions=signature.instructions or "",
        )

    @property
    def input_names(self) -> list[str]:
        return [f.name for f in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [f.name for f in self.outputs]

    @cached_property
    def input_model(self) -> type[BaseModel]:
        return _model("Inputs", self.inputs)

    @cached_property
    def output_model(self) -> type[BaseModel]:
        return _model("Outputs", self.outputs)

    def neutral_inputs(self) -> dict[str, Any]:
        """Valid inputs of the declared types with neutral values (a warm-up call's inputs, not real data)."""
        return {f.name: _neutral_value(f.base_annotation) for f in self.inputs}

    def validate_inputs(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check ``values`` against the input fields; return them coerced to the declared types."""
        return _validate(self.input_model, values, "input")

    def validate_outputs(self, values: dict[str, Any]) -> dict[str, Any]:
        """Check ``values`` against the output fields; return them coerced to the declared types."""
        return _validate(self.output_model, values, "output")

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs": [f.to_dict() for f in self.inputs],
            "outputs": [f.to_dict() for f in self.outputs],
        }


def _neutral_value(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return typing.get_args(annotation)[0]
    if origin in (typing.Union, types.UnionType):
        return _neutral_value(typing.get_args(annotation)[0])
    base = origin or annotation
    if isinstance(base, type):
        if issubclass(base, bool):
            return False
        if issubclass(base, (int, float)):
            return base(0)
        if issubclass(base, (list, tuple, set)):
            return []
        if issubclass(base, dict):
            return {}
    return "hello"


def _model(name: str, fields: tuple[FieldSpec, ...]) -> type[BaseModel]:
    definitions: dict[str, Any] = {
        f.name: (f.annotation, None if f.optional else ...) for f in fields
    }
    return create_model(name, __config__=ConfigDict(extra="forbid"), **definitions)


def _validate(model: type[BaseModel], values: dict[str, Any], role: str) -> dict[str, Any]:
    if not isinstance(values, dict):
        raise InputValidationError(f"{role}s must be an object of field values, got {type(values).__name__}")
    try:
        return model.model_validate(values).model_dump()
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt field shows up as one unknown and one missing field: name the unknown one.
        first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
        name = ".".join(str(p) for p in first["loc"]) or None
        expected = ", ".join(model.model_fields)
        if first["type"] == "missing":
            message = f"missing {role} field '{name}' (expected: {expected})"
        elif first["type"] == "extra_forbidden":
            message = f"unknown {role} field '{name}' (expected: {expected})"
        else:
            message = f"{role} field '{name}': {first['msg']}"
        raise InputValidationError(message, field=name) from None
