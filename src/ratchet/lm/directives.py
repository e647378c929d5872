"""Instructions from the completion adapter to engines that can follow them, carried in ``response_format``.

DSPy 3.4's canonical request has no slot for a decoding grammar or a set of choices,
so they travel as a named JSON-schema response format::

    {"type": "json_schema", "json_schema": {"name": "ratchet_gbnf",    "schema": {"x-ratchet": {"grammar": "..."}}}}
    {"type": "json_schema", "json_schema": {"name": "ratchet_choices", "schema": {"x-ratchet": {"choices": [...],
                                                                                 "calibration_prompt": "..."}}}}

The directive is part of DSPy's cache key; only engines that know the names (the
embedded llama.cpp engine: ``supports_grammar``, ``supports_choices``) send them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["choices_directive", "grammar_directive", "read_directive"]

_PREFIX = "ratchet_"
_KEY = "x-ratchet"


def _directive(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"type": "json_schema", "json_schema": {"name": _PREFIX + kind, "schema": {_KEY: payload}}}


def grammar_directive(grammar: str) -> dict[str, Any]:
    """Decode only completions the GBNF ``grammar`` accepts."""
    return _directive("gbnf", {"grammar": grammar})


def choices_directive(choices: list[str], calibration_prompt: str | None = None) -> dict[str, Any]:
    """Answer with the most likely of ``choices`` (scored, not generated), calibrated against the
    same prompt with content-free inputs when ``calibration_prompt`` is given."""
    return _directive("choices", {"choices": list(choices), "calibration_prompt": calibration_prompt})


def read_directive(response_format: Any) -> tuple[str, dict[str, Any]] | None:
    """``(kind, payload)`` of a directive in a ``response_format`` (as sent, or as DSPy canonicalises it)."""
    if not isinstance(response_format, dict):
        return None
    name, schema = response_format.get("name"), response_format.get("schema")
    if name is None:
        inner = response_format.get("json_schema") or {}
        name, schema = inner.get("name"), inner.get("schema")
    if not isinstance(name, str) or not name.startswith(_PREFIX) or not isinstance(schema, dict):
        return None
    payload = schema.get(_KEY)
    return (name.removeprefix(_PREFIX), payload) if isinstance(payload, dict) else None
