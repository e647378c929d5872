"""Adopt Ratchet without rewriting code: wrap an existing DSPy module in the runtime's call path."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import dspy

from ratchet.errors import DuplicateProgramError, InvalidProgramError
from ratchet.programs.registry import ProgramRegistry, program

if TYPE_CHECKING:
    from ratchet.serve.runtime import Runtime

__all__ = ["InstrumentedModule", "instrument"]


class InstrumentedModule:
    """Call it like the module it wraps; each call is routed, measured, counted and sampled.

    ``request_id=`` and ``user_id=`` keyword arguments are taken by the wrapper (the
    user id keeps a user on one arm of an experiment). A failed call raises the
    original exception, exactly as the bare module would.
    """

    def __init__(self, runtime: Runtime, signature: str) -> None:
        self.runtime = runtime
        self.signature = signature
        self.last_request_id: str | None = None

    def __call__(self, *, request_id: str | None = None, user_id: str | None = None, **inputs: Any
                 ) -> dspy.Prediction:
        result = self.runtime.call(self.signature, inputs, request_id=request_id, user_id=user_id)
        self.last_request_id = result.request_id
        result.raise_for_error()
        assert result.prediction is not None
        return result.prediction

    async def acall(self, *, request_id: str | None = None, user_id: str | None = None, **inputs: Any
                    ) -> dspy.Prediction:
        result = await self.runtime.acall(self.signature, inputs, request_id=request_id, user_id=user_id)
        self.last_request_id = result.request_id
        result.raise_for_error()
        assert result.prediction is not None
        return result.prediction


def instrument(module: dspy.Module, *, signature: str, metric: Callable[..., Any] | None = None,
               runtime: Runtime | None = None) -> InstrumentedModule:
    """Wrap ``module`` so calls go through ``runtime`` (a default :class:`Runtime` when omitted).

    When ``signature`` is not registered yet, the module is registered under it
    (its state as it is now becomes the ``base`` version). Without ``metric`` the
    program serves and collects telemetry, but evaluation and optimization refuse it.
    """
    if runtime is None:
        from ratchet.serve.runtime import Runtime

        runtime = Runtime()
    registry: ProgramRegistry = runtime.registry
    if signature not in registry:
        template = module.deepcopy()

        def factory() -> dspy.Module:
            return template.deepcopy()

        factory.__qualname__ = f"instrumented.{signature}"
        factory.__module__ = type(module).__module__
        with contextlib.suppress(DuplicateProgramError):  # registered concurrently under the same name
            program(signature, metric=metric or _unscored, registry=registry)(factory)
    return InstrumentedModule(runtime, signature)


def _unscored(example: Any, prediction: Any, trace: Any = None) -> float:
    raise InvalidProgramError(
        "this program was registered by ratchet.instrument() without a metric; pass metric= to score it"
    )
