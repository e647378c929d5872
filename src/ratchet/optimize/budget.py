"""Time budgets of an optimization: a deadline, a hard stop for LM calls past it, and what an instruction
search can afford in the time left.

An optimizer such as MIPROv2 has no clock of its own; Ratchet gives it a number of trials that fits the time
left (:func:`affordable_trials`, from the seconds per example measured while searching demos) and, as a
safety net, LMs wrapped by :func:`guarded_lm` fail every call that starts after the deadline while their
:class:`DeadlineGuard` is armed, so an overrunning search ends within one call of it. (A DSPy callback
cannot do this: DSPy logs and swallows a callback's exceptions.)
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import dspy

__all__ = ["BudgetExhausted", "DeadlineGuard", "InstructionCost", "affordable_trials", "guarded_lm"]


class BudgetExhausted(RuntimeError):
    """An LM call started after the optimization's deadline."""


class DeadlineGuard:
    """Raises :class:`BudgetExhausted` from :meth:`check` after ``deadline`` (``clock`` time) while armed;
    ``tripped`` counts the refusals."""

    def __init__(self, deadline: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        self.deadline = deadline
        self.clock = clock
        self.armed = False
        self.tripped = 0
        self._lock = threading.Lock()

    def check(self) -> None:
        if self.armed and self.deadline is not None and self.clock() >= self.deadline:
            with self._lock:
                self.tripped += 1
            raise BudgetExhausted("the optimization's time budget is spent")


_GUARDED: dict[type, type] = {}


def guarded_lm(lm: dspy.LM, guard: DeadlineGuard) -> dspy.LM:
    """A copy of ``lm`` (same engine, same role tag) whose every call first asks ``guard``; copies of the copy
    (optimizers copy LMs) ask it too."""
    base = type(lm)
    cls = _GUARDED.get(base)
    if cls is None:
        def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.ratchet_guard.check()
            return base.__call__(self, *args, **kwargs)

        async def acall(self: Any, *args: Any, **kwargs: Any) -> Any:
            self.ratchet_guard.check()
            return await base.acall(self, *args, **kwargs)

        cls = _GUARDED.setdefault(base, type(f"Guarded{base.__name__}", (base,),
                                              {"__call__": __call__, "acall": acall}))
    copy = lm.copy()
    copy.__class__ = cls
    copy.ratchet_guard = guard
    return copy


@dataclass(frozen=True)
class InstructionCost:
    """What one MIPROv2 instruction search costs, in seconds, from the measured seconds per dev example.

    Fixed: the rest of the dev split for the demo-search winner, MIPROv2's evaluation of the starting
    program, one proposal (and its bootstrapped examples) per instruction candidate, and the final
    evaluation of its result on the dev split. Per trial: a minibatch, plus a full evaluation every
    ``full_eval_every`` trials.
    """

    seconds_per_example: float
    dev_size: int
    unscored_dev: int  # dev examples the winner has not been scored on
    candidates: int
    seconds_per_proposal: float = 15.0
    minibatch: int = 35
    full_eval_every: int = 5

    @property
    def fixed(self) -> float:
        evaluations = self.unscored_dev + 2 * self.dev_size
        return evaluations * self.seconds_per_example + self.candidates * self.seconds_per_proposal

    @property
    def per_trial(self) -> float:
        batch = min(self.minibatch, self.dev_size) if self.dev_size > 50 else self.dev_size
        full = self.dev_size / self.full_eval_every if self.dev_size > 50 else 0.0
        return (batch + full) * self.seconds_per_example


def affordable_trials(cost: InstructionCost, seconds_left: float, *, cap: int | None = None) -> int:
    """Trials that fit in ``seconds_left`` (0 when not even the fixed part does), at most ``cap``."""
    spare = seconds_left - cost.fixed
    if spare <= 0 or cost.per_trial <= 0:
        return 0
    trials = math.floor(spare / cost.per_trial)
    return max(0, min(trials, cap) if cap is not None else trials)
