"""How the completion adapter names and types a signature's fields (shared by the prompt and the grammar)."""

from __future__ import annotations

import types
import typing
from typing import Any

__all__ = ["field_label", "unwrap_optional"]


def field_label(name: str, info: Any) -> str:
    """The ``Label:`` a field's value follows: its DSPy prefix, else the name capitalised."""
    prefix = str((info.json_schema_extra or {}).get("prefix") or "").strip()
    if not prefix:
        prefix = name.replace("_", " ").strip().capitalize() + ":"
    return prefix if prefix.endswith(":") else prefix + ":"


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """``(T, True)`` for ``T | None`` (``Optional[T]``), else ``(annotation, False)``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True  # noqa: UP007
    return annotation, False
