"""Reading a completion-adapter answer back: ``Label: value`` lines, and each value as its field's type.

The counterpart of :mod:`ratchet.lm.answer_grammar`: a ``Literal`` answer matches its choice
whatever its case, quotes or punctuation; booleans read ``true``/``yes``/``1`` and their
opposites; numbers are the first number in the text; lists are JSON (repaired), bullet lines or
comma-separated; ``T | None`` reads :data:`~ratchet.lm.answer_grammar.NONE_WORD` and its
synonyms as ``None``; any other type goes to DSPy's own parser.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

import json_repair
import pydantic
from dspy.adapters.utils import parse_value

from ratchet.lm.answer_grammar import NONE_WORD

__all__ = ["parse_field_value", "split_label", "starts_with_label"]

_NONE_WORDS = {"", NONE_WORD, "null", "n/a", "na", "-", "nothing", "not mentioned", "unknown"}


def split_label(line: str) -> tuple[str | None, str]:
    """``("label", "value")`` of a ``Label: value`` line (the label case-folded, markdown stripped), else
    ``(None, line)``."""
    head, sep, rest = line.partition(":")
    if not sep or len(head) > 60:
        return None, line
    return head.strip().strip("*#`").strip().casefold(), rest.strip()


def starts_with_label(text: str, labels: dict[str, str]) -> bool:
    """Whether the first line of ``text`` begins with one of ``labels`` (case-folded, without the colon)."""
    key, _ = split_label(text.split("\n", 1)[0])
    return key is not None and key in labels


def parse_field_value(text: str, annotation: Any, optional: bool = False) -> Any:
    """Convert one field's text to ``annotation`` (``optional`` allows ``none``)."""
    if optional and text.strip().strip("\"'.").casefold() in _NONE_WORDS:
        return None
    if annotation is str:
        return text.strip()
    origin = typing.get_origin(annotation)
    if origin is Literal:
        allowed = typing.get_args(annotation)
        by_norm = {_normalise_choice(str(a)): a for a in allowed}
        first_line = text.strip().split("\n", 1)[0]
        key = _normalise_choice(first_line)
        if key in by_norm:
            return by_norm[key]
        raise ValueError(f"not one of {', '.join(map(str, allowed))}")
    if annotation is bool:
        word = text.strip().strip(".").casefold()
        if word in ("true", "yes", "1"):
            return True
        if word in ("false", "no", "0"):
            return False
        raise ValueError("expected true or false")
    if annotation in (int, float):
        match = re.search(r"-?\d+(?:\.\d+)?", text.replace(",", ""))
        if not match:
            raise ValueError("expected a number")
        return pydantic.TypeAdapter(annotation).validate_python(
            float(match.group()) if annotation is float else int(float(match.group())))
    if origin is list:
        return _parse_list(text, annotation)
    return parse_value(text, annotation)


def _normalise_choice(text: str) -> str:
    text = text.strip().strip("\"'`*.,;:!?()[]{} ").casefold()
    return re.sub(r"[\s\-]+", "_", text)


def _parse_list(text: str, annotation: Any) -> list[Any]:
    stripped = text.strip()
    candidate: Any = None
    if stripped.startswith("["):
        candidate = json_repair.loads(stripped)
    if not isinstance(candidate, list):
        lines = [ln.strip() for ln in stripped.splitlines() if ln.strip()]
        bullet = re.compile(r"^(?:[-*•]|\d+[.)])\s+")
        if len(lines) > 1 or (lines and bullet.match(lines[0])):
            candidate = [bullet.sub("", ln) for ln in lines]
        else:
            candidate = [part.strip() for part in stripped.split(",") if part.strip()]
    return pydantic.TypeAdapter(annotation).validate_python(candidate)
