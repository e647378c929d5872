"""A DSPy adapter that speaks plain completion: the format base models continue best.

The prompt is the signature's instructions, a short field guide, then every
demo and finally the current input as ``Field: value`` lines, ending with the
first output field's label for the model to continue::

    Classify the customer's message.
    - intent: one of card_arrival, exchange_rate, pin_blocked

    Text: Where is my new card?
    Intent: card_arrival

    Text: My PIN is blocked
    Intent:

Generation stops at a blank line (the end of an example) or when the model
starts another input. Parsing maps labelled lines back to output fields and
converts values to the signature's types (:mod:`ratchet.lm.answer_parsing`); a
completion that cannot be mapped raises :class:`~ratchet.errors.OutputParseError`
(a DSPy ``AdapterParseError``).
"""

from __future__ import annotations

import json
import re
import typing
from typing import Any, Literal

import pydantic
from dspy.adapters.base import Adapter
from dspy.adapters.types import History
from dspy.adapters.utils import serialize_for_json
from dspy.signatures.signature import Signature
from dspy.utils.callback import BaseCallback
from dspy.utils.exceptions import AdapterParseError

from ratchet.errors import OutputParseError
from ratchet.lm.answer_grammar import NONE_WORD, answer_grammar, structured_output
from ratchet.lm.answer_parsing import parse_field_value, split_label, starts_with_label
from ratchet.lm.directives import choices_directive, grammar_directive
from ratchet.lm.fields import field_label as _label
from ratchet.lm.fields import unwrap_optional as _unwrap_optional

__all__ = ["CompletionAdapter", "answer_grammar", "single_choice_field"]

_BLANK_RUN = re.compile(r"\n\s*\n+")
_FORMAT_EXAMPLE = "__ratchet_format_example__"  # marks the demo that format_example() adds
_CONTENT_FREE = "N/A"


def single_choice_field(signature: type[Signature]) -> list[str] | None:
    """The allowed answers when the signature's only output is a ``Literal`` (plus ``none`` if optional)."""
    if len(signature.output_fields) != 1:
        return None
    info = next(iter(signature.output_fields.values()))
    base, optional = _unwrap_optional(info.annotation)
    if typing.get_origin(base) is not Literal:
        return None
    return [str(a) for a in typing.get_args(base)] + ([NONE_WORD] if optional else [])


def _short_answer_chars(signature: type[Signature]) -> int | None:
    """For a single one-line output (choice, number, boolean): the longest valid answer in characters."""
    if len(signature.output_fields) != 1:
        return None
    info = next(iter(signature.output_fields.values()))
    base, optional = _unwrap_optional(info.annotation)
    extra = len(NONE_WORD) if optional else 0
    if typing.get_origin(base) is Literal:
        return max([len(str(a)) for a in typing.get_args(base)] + [extra])
    if base is bool:
        return max(5, extra)
    if base in (int, float):
        return max(32, extra)
    return None


class CompletionAdapter(Adapter):
    """Render signatures as plain ``Field: value`` completion prompts and parse them back.

    Works with any DSPy module (``Predict``, ``ChainOfThought``, …), ``Evaluate``
    and the optimizers: instructions, field prefixes and demos all flow through.
    """

    def __init__(self, callbacks: list[BaseCallback] | None = None, *, guide: bool = True,
                 constrain: bool = False, choice_scoring: str = "off") -> None:
        """``guide`` adds a line per output field (choices, types).

        ``constrain``: on engines that support it (``supports_grammar``: the embedded llama.cpp
        engine), answers with more than one output field or a typed one are decoded under a GBNF
        grammar of their shape (:func:`ratchet.lm.answer_grammar.answer_grammar`, sent with
        :func:`ratchet.lm.directives.grammar_directive`): each value on its labelled line, typed,
        ``none`` where the field is optional, then the end. Zero-shot (no demos) from the first
        call, after one example of the answer form (:meth:`format_example`): a base model then
        answers in field form instead of continuing the prompt. With demos the model already
        answers in form and the grammar only costs time (measured: 8 % a call), so it is the
        retry for an answer that cannot be parsed. Other engines are unaffected.

        ``choice_scoring`` (``off``, ``likelihood`` or ``calibrated``), for signatures whose
        only output is a choice (``Literal``): instead of generating, the engine scores every
        choice and answers with the most likely one; ``calibrated`` divides by each choice's
        likelihood for content-free inputs ("N/A"), which removes a small model's bias
        toward some labels (contextual calibration, Zhao et al. 2021). Engines must
        support it (``supports_choices``).
        """
        super().__init__(callbacks=callbacks)
        if choice_scoring not in ("off", "likelihood", "calibrated"):
            raise ValueError(f"choice_scoring must be off, likelihood or calibrated, got {choice_scoring!r}")
        self.guide = guide
        self.constrain = constrain
        self.choice_scoring = choice_scoring

    # -- calling ------------------------------------------------------------------------------
    def __call__(self, lm, lm_kwargs, signature, demos, inputs):  # type: ignore[override]
        kwargs, shown = self._request(lm, lm_kwargs, signature, demos, inputs)
        try:
            return super().__call__(lm, kwargs, signature, shown, inputs)
        except AdapterParseError:
            if not self._may_retry(lm, kwargs, signature):
                raise
            return super().__call__(lm, self._constrained(kwargs, signature), signature, demos, inputs)

    async def acall(self, lm, lm_kwargs, signature, demos, inputs):  # type: ignore[override]
        kwargs, shown = self._request(lm, lm_kwargs, signature, demos, inputs)
        try:
            return await super().acall(lm, kwargs, signature, shown, inputs)
        except AdapterParseError:
            if not self._may_retry(lm, kwargs, signature):
                raise
            return await super().acall(lm, self._constrained(kwargs, signature), signature, demos, inputs)

    def _request(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[Signature], demos: list[dict[str, Any]],
                 inputs: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The LM call's arguments and the demos to show: choice scoring, or generation (zero-shot: under the
        grammar, after one example of the answer form)."""
        if self._scores_choices(signature, lm_kwargs):
            return self._choice_kwargs(lm_kwargs, signature, demos, inputs), demos
        kwargs = self._call_kwargs(lm, lm_kwargs, signature)
        if not demos and self._constrains(lm, kwargs, signature):
            kwargs = self._constrained(kwargs, signature)
            example = self.format_example(signature)
            demos = [example] if example is not None else demos
        return kwargs, demos

    def _may_retry(self, lm: Any, kwargs: dict[str, Any], signature: type[Signature]) -> bool:
        """With demos the first answer is free; one that cannot be parsed is asked again under the grammar."""
        return self._constrains(lm, kwargs, signature)

    @staticmethod
    def _constrained(kwargs: dict[str, Any], signature: type[Signature]) -> dict[str, Any]:
        return {**kwargs, "response_format": grammar_directive(answer_grammar(signature))}

    def format_example(self, signature: type[Signature]) -> dict[str, Any] | None:
        """For a zero-shot call under the grammar whose outputs are all optional: one example of the answer form.

        A content-free input (``N/A``) with every output ``none``. Without any example a base model
        continues the field guide instead of answering (it copies "how many people; none if absent");
        with this one and a line saying when to write ``none``, it answers in field form and writes
        ``none`` where the input says nothing. The prompt then shows the instructions and that line
        but not the per-field guide, whose types the grammar enforces anyway.
        """
        fields = signature.output_fields
        if not all(_unwrap_optional(info.annotation)[1] for info in fields.values()):
            return None
        example: dict[str, Any] = {name: _CONTENT_FREE for name in self._inputs(signature)}
        example.update(dict.fromkeys(fields))
        example[_FORMAT_EXAMPLE] = True
        return example

    def _scores_choices(self, signature: type[Signature], lm_kwargs: dict[str, Any]) -> bool:
        return (self.choice_scoring != "off" and "response_format" not in lm_kwargs
                and single_choice_field(signature) is not None)

    def _choice_kwargs(self, lm_kwargs: dict[str, Any], signature: type[Signature], demos: list[dict[str, Any]],
                       inputs: dict[str, Any]) -> dict[str, Any]:
        choices = single_choice_field(signature) or []
        calibration = None
        if self.choice_scoring == "calibrated":
            blank = {name: _CONTENT_FREE for name in self._inputs(signature)}
            calibration = self.render(signature, demos, {**inputs, **blank})
        return {**lm_kwargs, "max_tokens": 1, "response_format": choices_directive(choices, calibration)}

    def _constrains(self, lm: Any, kwargs: dict[str, Any], signature: type[Signature]) -> bool:
        """Decode under the answer's grammar: asked for, the engine can, and the answer has a shape to keep."""
        engine = getattr(lm, "engine", None)
        return (self.constrain and "response_format" not in kwargs
                and getattr(engine, "supports_grammar", False) is True and structured_output(signature))

    def stop_sequences(self, signature: type[Signature]) -> list[str]:
        """A blank line ends an example; a new input label means the model began another one.

        A signature whose only output is a one-line value (a choice, number or boolean)
        also stops at the end of the line.
        """
        stops = ["\n\n"]
        for name, info in signature.input_fields.items():
            if info.annotation is not History:
                stops.append("\n" + _label(name, info))
                break
        if _short_answer_chars(signature) is not None:
            stops.append("\n")
        return stops

    def _call_kwargs(self, lm: Any, lm_kwargs: dict[str, Any], signature: type[Signature]) -> dict[str, Any]:
        kwargs = dict(lm_kwargs)
        existing = kwargs.get("stop") or []
        existing = [existing] if isinstance(existing, str) else list(existing)
        kwargs["stop"] = existing + [s for s in self.stop_sequences(signature) if s not in existing]
        longest = _short_answer_chars(signature)
        if longest is not None:
            # A token is at least one character: no valid answer needs more tokens than this.
            configured = kwargs.get("max_tokens") or getattr(lm, "kwargs", {}).get("max_tokens") or 256
            kwargs["max_tokens"] = min(int(configured), longest + 8)
        return kwargs

    # -- formatting ---------------------------------------------------------------------------
    def format(self, signature: type[Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]
               ) -> list[dict[str, Any]]:
        return [{"role": "user", "content": self.render(signature, demos, inputs)}]

    def render(self, signature: type[Signature], demos: list[dict[str, Any]], inputs: dict[str, Any]) -> str:
        """The whole completion prompt as one string."""
        blocks: list[str] = []
        header = self._header(signature, format_example=bool(demos) and bool(demos[0].get(_FORMAT_EXAMPLE)))
        if header:
            blocks.append(header)
        for demo in demos:
            block = self._demo_block(signature, demo)
            if block:
                blocks.append(block)
        blocks.extend(self._history_blocks(signature, inputs))
        current = [self._line(name, info, inputs[name]) for name, info in self._inputs(signature).items()
                   if name in inputs]
        first_name, first_info = next(iter(signature.output_fields.items()))
        current.append(_label(first_name, first_info))
        blocks.append("\n".join(current))
        return "\n\n".join(blocks)

    def _inputs(self, signature: type[Signature]) -> dict[str, Any]:
        return {n: f for n, f in signature.input_fields.items() if f.annotation is not History}

    def _header(self, signature: type[Signature], *, format_example: bool = False) -> str:
        lines = []
        instructions = (signature.instructions or "").strip()
        if instructions:
            lines.append(_BLANK_RUN.sub("\n", instructions))
        if format_example:
            names = [_label(n, f)[:-1].casefold() for n, f in self._inputs(signature).items()]
            lines.append(f"Write {NONE_WORD} for a field the {' and '.join(names) or 'input'} does not give.")
        elif self.guide:
            lines.extend(self._guide(signature))
        return "\n".join(lines)

    def _guide(self, signature: type[Signature]) -> list[str]:
        lines = []
        for name, info in signature.output_fields.items():
            base, optional = _unwrap_optional(info.annotation)
            extra = info.json_schema_extra or {}
            desc = str(extra.get("desc") or "")
            desc = "" if desc == f"${{{name}}}" else desc
            notes = [desc] if desc else []
            if typing.get_origin(base) is Literal:
                notes.append("one of " + ", ".join(str(a) for a in typing.get_args(base)))
            elif typing.get_origin(base) is list:
                notes.append("a JSON list")
            elif base is bool:
                notes.append("true or false")
            elif base in (int, float):
                notes.append("a number")
            if optional:
                notes.append("none if absent")
            if notes:
                lines.append(f"- {_label(name, info)[:-1]}: {'; '.join(notes)}")
        return lines

    def _demo_block(self, signature: type[Signature], demo: dict[str, Any]) -> str:
        inputs = self._inputs(signature)
        if not all(name in demo for name in inputs):
            return ""
        outputs = [n for n in signature.output_fields if n in demo]
        if not outputs:
            return ""
        lines = [self._line(n, info, demo[n]) for n, info in inputs.items()]
        lines.extend(self._line(n, signature.output_fields[n], demo[n]) for n in outputs)
        return "\n".join(lines)

    def _history_blocks(self, signature: type[Signature], inputs: dict[str, Any]) -> list[str]:
        blocks = []
        for name, info in signature.input_fields.items():
            if info.annotation is History and name in inputs and inputs[name] is not None:
                for message in inputs[name].messages:
                    block = self._demo_block(signature, message)
                    if block:
                        blocks.append(block)
        return blocks

    def _line(self, name: str, info: Any, value: Any) -> str:
        return f"{_label(name, info)} {self.format_value(value)}".rstrip()

    @staticmethod
    def format_value(value: Any) -> str:
        """One value as prompt text: strings as they are, None as ``none``, structures as JSON."""
        if value is None:
            return NONE_WORD
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, str):
            return _BLANK_RUN.sub("\n", value.strip())
        jsonable = serialize_for_json(value)
        if isinstance(jsonable, (dict, list)):
            return json.dumps(jsonable, ensure_ascii=False)
        return _BLANK_RUN.sub("\n", str(jsonable).strip())

    # -- parsing ------------------------------------------------------------------------------
    def parse(self, signature: type[Signature], completion: str) -> dict[str, Any]:
        outputs = signature.output_fields
        labels = {(_label(n, f)[:-1]).casefold(): n for n, f in outputs.items()}
        labels.update({n.casefold(): n for n in outputs})
        input_labels = {(_label(n, f)[:-1]).casefold() for n, f in signature.input_fields.items()}
        input_labels.update(n.casefold() for n in signature.input_fields)

        first_name = next(iter(outputs))
        text = completion.lstrip()
        if not starts_with_label(text, labels):
            text = f"{_label(first_name, outputs[first_name])} {text}"

        raw: dict[str, list[str]] = {}
        current: str | None = None
        for line in text.splitlines():
            key, rest = split_label(line)
            if key is not None and key in labels:
                current = labels[key]
                if current in raw:  # the model started a second answer: keep the first
                    break
                raw[current] = [rest]
                continue
            if key is not None and key in input_labels:
                break  # the model began a new example
            if current is not None:
                raw[current].append(line)

        values: dict[str, Any] = {}
        for name, info in outputs.items():
            base, optional = _unwrap_optional(info.annotation)
            if name not in raw:
                if optional:
                    values[name] = None
                    continue
                raise OutputParseError(
                    adapter_name=type(self).__name__, signature=signature, lm_response=completion,
                    message=f"the completion has no value for output field '{name}'",
                    parsed_result=values,
                )
            value_text = "\n".join(raw[name]).strip()
            try:
                values[name] = self.parse_value(value_text, base, optional)
            except (ValueError, pydantic.ValidationError) as exc:
                raise OutputParseError(
                    adapter_name=type(self).__name__, signature=signature, lm_response=completion,
                    message=f"output field '{name}': cannot read {value_text!r} as {base}: {exc}",
                    parsed_result=values,
                ) from None
        return values

    @staticmethod
    def parse_value(text: str, annotation: Any, optional: bool = False) -> Any:
        """Convert one field's text to ``annotation`` (``optional`` allows ``none``)."""
        return parse_field_value(text, annotation, optional)
