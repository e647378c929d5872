"""How many demos a base model's prompt holds, and how to group examples for a balanced draw."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dspy

from ratchet.lm.adapter import single_choice_field
from ratchet.lm.tokens import PromptBudget
from ratchet.programs.registry import ProgramSpec

__all__ = ["DEFAULT_CAP", "demo_capacity", "demo_group", "longest_inputs", "prompt_tokens"]

DEFAULT_CAP = 40  # demos when the prompt cannot be measured (a LiteLLM model missing from LiteLLM's table)
_HEADROOM = 0.9  # share of the model's input budget a demo set may fill with the longest known input


def demo_group(spec: ProgramSpec) -> Any:
    """What a balanced draw balances: the label (``label_field``, else a single ``Literal`` output), else which
    output fields an example fills (``"date+people"``, ``"empty"``: every field and the empty case are shown)."""
    label = spec.label_field
    if label is None and single_choice_field(spec.signature) is not None:
        label = next(iter(spec.signature.output_fields))
    if label is not None:
        return lambda example: str(example.get(label))
    return lambda example: spec.category(example.toDict())


def longest_inputs(examples: Sequence[dspy.Example]) -> dict[str, Any]:
    """The inputs of the example whose inputs are longest (in characters)."""
    if not examples:
        return {}
    return dict(max((ex.inputs() for ex in examples), key=lambda values: sum(len(str(v)) for v in values.values())))


def prompt_tokens(adapter: dspy.Adapter, signature: type[dspy.Signature], demos: Sequence[dspy.Example],
                  inputs: dict[str, Any], budget: PromptBudget) -> int | None:
    """Tokens of the prompt ``adapter`` renders for ``demos`` and ``inputs`` (None when it cannot count)."""
    if budget.counter is None:
        return None
    return budget.counter(adapter.format(signature, list(demos), inputs))


def demo_capacity(adapter: dspy.Adapter, signature: type[dspy.Signature], demos: Sequence[dspy.Example],
                  inputs: dict[str, Any], budget: PromptBudget, *, cap: int) -> int:
    """The most leading demos of ``demos`` (at most ``cap``) whose prompt with ``inputs`` fills at most 90 % of the
    model's input budget; ``min(cap, DEFAULT_CAP)`` when the budget is unknown."""
    upper = min(cap, len(demos))
    if not budget.enabled:
        return min(upper, DEFAULT_CAP)
    limit = int(budget.limit * _HEADROOM)

    def fits(k: int) -> bool:
        tokens = prompt_tokens(adapter, signature, demos[:k], inputs, budget)
        return tokens is not None and tokens <= limit

    if fits(upper):
        return upper
    low, high = 0, upper  # fits(low) is assumed (no demos), fits(high) is false
    while high - low > 1:
        middle = (low + high) // 2
        if fits(middle):
            low = middle
        else:
            high = middle
    return low
