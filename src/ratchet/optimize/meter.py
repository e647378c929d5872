"""Count LM calls per role (task, prompt, teacher, reflection), tokens and cost while an optimizer runs."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import dspy
from dspy.clients import base_lm
from dspy.utils.callback import BaseCallback

from ratchet.lm.pricing import TokenPrices

__all__ = ["LMUsageMeter"]

_SCAN = 128  # history entries looked at per finished call (calls finish close to their entry)


class LMUsageMeter(BaseCallback):
    """A DSPy callback: calls by role (the LM's ``ratchet_role`` tag, which survives ``LM.copy``, else
    which LM object was called), tokens and cost from DSPy's history
    (cost: DSPy's estimate, else ``prices`` by model name, else unknown).

    Register it with ``dspy.context(callbacks=[meter])``. ``on_call`` (optional) is told
    after every finished LM call, e.g. to advance a progress bar.
    """

    def __init__(self, roles: dict[str, dspy.LM], on_call: Callable[[], None] | None = None,
                 prices: dict[str, TokenPrices | None] | None = None) -> None:
        self._prices = prices or {}
        self._roles = {id(lm): role for role, lm in reversed(list(roles.items()))}  # first role wins on sharing
        self._on_call = on_call
        self._lock = threading.Lock()
        self._pending: dict[str, str] = {}
        self._seen: set[str] = set()
        self.calls: Counter[str] = Counter()
        self.failures: Counter[str] = Counter()
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost_usd = 0.0
        self._cost_known = True

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        with self._lock:
            role = getattr(instance, "ratchet_role", None) or self._roles.get(id(instance), "task")
            self._pending[call_id] = role

    def on_lm_end(self, call_id: str, outputs: Any, exception: Exception | None = None) -> None:
        with self._lock:
            role = self._pending.pop(call_id, "task")
            self.calls[role] += 1
            if exception is not None:
                self.failures[role] += 1
            for entry in base_lm.GLOBAL_HISTORY[-_SCAN:]:
                key = entry.get("uuid")
                if key is None or key in self._seen:
                    continue
                self._seen.add(key)
                usage = entry.get("usage") or {}
                tokens_in = int(usage.get("prompt_tokens") or 0)
                tokens_out = int(usage.get("completion_tokens") or 0)
                self.tokens_in += tokens_in
                self.tokens_out += tokens_out
                cost = entry.get("cost")
                if cost is None:  # DSPy has no price (custom engine, unknown model): use the configured one
                    prices = self._prices.get(str(entry.get("model")))
                    cost = prices.cost(tokens_in, tokens_out) if prices is not None else None
                if cost is None:
                    self._cost_known = self._cost_known and not usage
                else:
                    self.cost_usd += float(cost)
        if self._on_call is not None:
            self._on_call()

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    def summary(self) -> dict[str, Any]:
        return {
            "lm_calls": dict(self.calls),
            "lm_calls_total": self.total_calls,
            "failed_calls": dict(self.failures),
            "tokens": {"input": self.tokens_in, "output": self.tokens_out},
            "cost_usd": round(self.cost_usd, 6) if self._cost_known else None,
        }
