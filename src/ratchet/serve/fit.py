"""Inputs the model cannot take, refused before any LM call: text that is not valid, prompts that do not fit.

:func:`invalid_text` finds an input string that cannot be encoded as UTF-8 (a lone surrogate such as
``"\\ud800"`` arrives through JSON escapes); :class:`PromptFit` renders the prompt each predictor of
the served program would send for a request — with the serving adapter, the predictor's instructions
and demos — and counts its tokens against the model's context minus the output budget
(``lm.max_tokens``):

* the embedded model (llama.cpp): the model's own tokenizer
  (:meth:`~ratchet.lm.engines.llamacpp.LlamaCppEngine.count_tokens`), against ``lm.local.n_ctx``.
  Every token of a llama.cpp vocabulary covers at least one byte, so a prompt is not tokenized
  when bytes settle it: fewer UTF-8 bytes than the budget has tokens, or the version's own prompt
  (neutral inputs, counted once) plus every byte the request's inputs add, plus a margin of 16
  tokens, within the budget. Only prompts near or over the limit are counted.
* a LiteLLM model: ``litellm.token_counter`` (the provider's tokenizer where LiteLLM knows it,
  ``cl100k`` otherwise) against ``max_input_tokens`` from LiteLLM's model table; a model
  missing from the table is not checked (the provider's own error answers then).

A version whose prompt does not fit even with neutral inputs (its own instructions and demos fill the
context) is not refused here: it fails on the LM and that failure counts against its arm.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import dspy

from ratchet.errors import InputTooLongError, InvalidTextError
from ratchet.lm.setup import LMBundle
from ratchet.lm.tokens import message_text, prompt_budget

__all__ = ["PromptFit", "invalid_text"]

log = logging.getLogger(__name__)

Counter = Callable[[list[dict[str, Any]]], int]
_EDGE_MARGIN = 16  # tokens: where the inputs meet the template, merges may differ from either alone


def invalid_text(values: Mapping[str, Any]) -> InvalidTextError | None:
    """The error for the first input field holding a string that is not valid UTF-8 text (nested ones too)."""
    for field, value in values.items():
        if not _valid(value):
            return InvalidTextError(f"field '{field}' is not valid text (it holds a lone surrogate or another "
                                    "code point that cannot be encoded as UTF-8)", field=field)
    return None


def _valid(value: Any) -> bool:
    if isinstance(value, str):
        if value.isascii():
            return True
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    if isinstance(value, Mapping):
        return all(_valid(k) and _valid(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_valid(v) for v in value)
    return True


class PromptFit:
    """Refuse a request whose rendered prompt does not fit the task model's context (see the module doc)."""

    def __init__(self, lms: LMBundle) -> None:
        self.adapter = lms.adapter
        budget = prompt_budget(lms)
        self.counter: Counter | None = budget.counter
        self.method = budget.method
        self.limit = budget.limit if budget.enabled else 0
        self._fast_bytes = self.limit - 1 if budget.bytes_are_bounds and self.limit else 0
        self._templates: dict[tuple[int, int, int], tuple[int, int] | None] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.counter is not None and self.limit > 0

    def check(self, module: dspy.Module | None, values: Mapping[str, Any],
              neutral: Callable[[], Mapping[str, Any]]) -> InputTooLongError | None:
        """The error to answer with when ``module``'s prompt for ``values`` does not fit; None when it does
        (``neutral`` gives the signature's neutral inputs: the version's own prompt is measured with them once)."""
        if not self.enabled or module is None:
            return None
        for _, predictor in module.named_predictors():
            messages = self._render(predictor, values)
            if messages is None:
                continue
            template = self._template(predictor, neutral)
            if self._surely_fits(messages, template):
                continue
            assert self.counter is not None
            tokens = self.counter(messages)
            if tokens <= self.limit:
                continue
            if template is not None and template[0] > self.limit:
                return None  # the version's own prompt fills the context: its failure, counted on its arm
            field = _longest(values)
            return InputTooLongError(
                f"the input is too long for the model: its prompt has {tokens} tokens, the model takes {self.limit} "
                f"(field '{field}' is the longest)", field=field, tokens=tokens, limit=self.limit)
        return None

    def _surely_fits(self, messages: list[dict[str, Any]], template: tuple[int, int] | None) -> bool:
        """Whether the byte bounds settle it without the tokenizer (embedded model only: a token is >= 1 byte).

        Either the whole prompt has fewer bytes than the budget has tokens, or the version's own prompt's tokens
        plus every byte the inputs add (and a margin for tokens merged across their edges) stay within it.
        """
        if not self._fast_bytes:
            return False
        size = _utf8_length(messages)
        if size <= self._fast_bytes:
            return True
        return template is not None and template[0] + max(0, size - template[1]) + _EDGE_MARGIN <= self.limit

    def _render(self, predictor: Any, values: Mapping[str, Any]) -> list[dict[str, Any]] | None:
        signature = predictor.signature
        inputs = {name: values[name] for name in signature.input_fields if name in values}
        try:
            return self.adapter.format(signature, list(predictor.demos or []), inputs)
        except Exception as exc:  # a predictor whose inputs come from another one: its prompt is not known yet
            log.debug("cannot render the prompt of %s: %s", type(predictor).__name__, exc)
            return None

    def _template(self, predictor: Any, neutral: Callable[[], Mapping[str, Any]]) -> tuple[int, int] | None:
        """Tokens and bytes of the predictor's prompt for neutral inputs (counted once per loaded predictor)."""
        key = (id(predictor), id(predictor.signature), len(predictor.demos or []))
        with self._lock:
            if key in self._templates:
                return self._templates[key]
        messages = self._render(predictor, neutral())
        assert self.counter is not None
        known = None if messages is None else (self.counter(messages), _utf8_length(messages))
        with self._lock:
            self._templates[key] = known
        return known


def _utf8_length(messages: list[dict[str, Any]]) -> int:
    return sum(len(message_text(m).encode("utf-8")) + 2 for m in messages)


def _longest(values: Mapping[str, Any]) -> str | None:
    return max(values, key=lambda name: len(str(values[name])), default=None)
