"""GBNF grammars of a completion-adapter answer, built from a signature's output fields and their types.

The completion continues after the first output field's label; the grammar admits each
field's value on its own labelled line, in order, and then the end::

    root ::= " "? v0 "\\n" "Date:" " " v1 ...

A value follows its annotation: a ``Literal``'s choices, ``true``/``false``, an integer
or decimal number, a JSON list of such values or of strings, or for ``str`` (and any
other type) one line of at most ``line_chars`` characters. ``T | None`` also admits
:data:`NONE_WORD`, which the adapter's parser reads back as ``None``. llama.cpp decodes
only completions the grammar accepts (:mod:`ratchet.lm.engines.grammar`), so a base model
answers in field form and stops after the last field instead of continuing with prose.
"""

from __future__ import annotations

import typing
from typing import Any, Literal

from dspy.signatures.signature import Signature

from ratchet.lm.fields import field_label, unwrap_optional

__all__ = ["LINE_CHARS", "NONE_WORD", "answer_grammar", "gbnf_literal", "structured_output"]

NONE_WORD = "none"
LINE_CHARS = 200  # a free-text value: one line of at most this many characters
_LIST_ITEMS = 64
_SHARED = {
    "int": '"-"? [0-9]{1,18}',
    "num": '"-"? [0-9]{1,18} ("." [0-9]{1,12})?',
    "bool": '"true" | "false"',
}


def gbnf_literal(text: str) -> str:
    """``text`` as a GBNF string literal."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def structured_output(signature: type[Signature]) -> bool:
    """Whether an answer has a shape worth constraining: several output fields, or one that is not free text."""
    fields = list(signature.output_fields.values())
    return len(fields) > 1 or (len(fields) == 1 and unwrap_optional(fields[0].annotation)[0] is not str)


class _Rules:
    """Named rules of one grammar; shared helpers are added once, when first used."""

    def __init__(self, line_chars: int) -> None:
        self.line_chars = line_chars
        self.line = f"[^\\n]{{1,{line_chars}}}"
        self.rules: dict[str, str] = {}

    def shared(self, name: str) -> str:
        if name == "jstr":  # a JSON string of at most one line's characters
            self.rules.setdefault(name, f'"\\"" ([^"\\\\\\n] | "\\\\" ["\\\\/bfnrt]){{0,{self.line_chars}}} "\\""')
        else:
            self.rules.setdefault(name, _SHARED[name])
        return name

    def value(self, annotation: Any) -> str:
        """The expression of one field's value."""
        base, optional = unwrap_optional(annotation)
        expression = self._base(base)
        return f"{gbnf_literal(NONE_WORD)} | {expression}" if optional else expression

    def _base(self, base: Any) -> str:
        origin = typing.get_origin(base)
        if origin is Literal:
            return " | ".join(gbnf_literal(str(a)) for a in typing.get_args(base))
        if base is bool:
            return self.shared("bool")
        if base is int:
            return self.shared("int")
        if base is float:
            return self.shared("num")
        if origin is list:
            item = self._list_item((typing.get_args(base) or (str,))[0])
            if item is not None:
                more = f'("," " "? {item}){{0,{_LIST_ITEMS - 1}}}'
                return f'"[" ({item} {more})? "]"'
        return self.line

    def _list_item(self, annotation: Any) -> str | None:
        """A JSON list element, or None for element types written some other way (then the list is one line)."""
        origin = typing.get_origin(annotation)
        if annotation is str:
            return self.shared("jstr")
        if origin is Literal:
            return "(" + " | ".join(gbnf_literal(f'"{a}"' if isinstance(a, str) else str(a).lower())
                                    for a in typing.get_args(annotation)) + ")"
        if annotation in (bool, int, float):
            return self.shared({bool: "bool", int: "int", float: "num"}[annotation])
        return None


def answer_grammar(signature: type[Signature], *, line_chars: int = LINE_CHARS) -> str:
    """A GBNF grammar of the completion: each output field's value on its labelled line, in order."""
    rules = _Rules(line_chars)
    parts: list[str] = []
    values: list[str] = []
    for index, (name, info) in enumerate(signature.output_fields.items()):
        values.append(f"v{index} ::= {rules.value(info.annotation)}")
        if index == 0:
            parts.append(f'" "? v{index}')
        else:
            parts.append(f'"\\n" {gbnf_literal(field_label(name, info))} " " v{index}')
    shared = [f"{name} ::= {body}" for name, body in rules.rules.items()]
    return "\n".join([f"root ::= {' '.join(parts)}", *values, *shared]) + "\n"
