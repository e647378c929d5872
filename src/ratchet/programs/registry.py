"""The program registry: signature name → DSPy module factory, metric and schema.

Users register their programs with the :func:`program` decorator::

    @ratchet.program("classify_intent", metric=exact_match)
    def classify_intent() -> dspy.Module:
        return dspy.Predict(ClassifyIntent)
"""

from __future__ import annotations

import difflib
import inspect
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import dspy

from ratchet.errors import DuplicateProgramError, InvalidProgramError, UnknownProgramError
from ratchet.programs.schema import ProgramSchema

__all__ = ["REGISTRY", "Metric", "ProgramRegistry", "ProgramSpec", "program"]

Metric = Callable[..., Any]
Factory = Callable[[], dspy.Module]

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


@dataclass
class ProgramSpec:
    """Everything Ratchet knows about one registered program."""

    name: str
    factory: Factory
    metric: Metric
    signature: type[dspy.Signature]
    description: str = ""
    data: dict[str, Path] = field(default_factory=dict)
    label_field: str | None = None
    category_fn: Callable[[dict[str, Any]], str] | None = None

    @cached_property
    def schema(self) -> ProgramSchema:
        """Input/output fields of the signature (built once: serving validates every request against it)."""
        return ProgramSchema.from_signature(self.signature)

    @property
    def source(self) -> str:
        """Where the factory is defined: ``module:qualname``."""
        return f"{self.factory.__module__}:{self.factory.__qualname__}"

    @property
    def source_file(self) -> str:
        try:
            file = inspect.getsourcefile(self.factory) or "?"
            line = inspect.getsourcelines(self.factory)[1]
        except (OSError, TypeError):
            return "?"
        return f"{file}:{line}"

    @property
    def metric_name(self) -> str:
        return getattr(self.metric, "__qualname__", repr(self.metric))

    def category(self, values: dict[str, Any]) -> str:
        """The category of an example (for diversity checks): ``category=`` if given, else the label,
        else which output fields are filled (``"date+people"``), else ``"empty"``."""
        if self.category_fn is not None:
            return str(self.category_fn(values))
        if self.label_field is not None:
            return str(values.get(self.label_field))
        filled = sorted(n for n in self.signature.output_fields if values.get(n) not in (None, "", [], {}))
        return "+".join(filled) or "empty"

    def build(self) -> dspy.Module:
        """A fresh instance of the program."""
        return _checked_module(self.name, self.factory)

    def score(self, example: dspy.Example, prediction: dspy.Prediction) -> float:
        """The metric as a float (``True`` → 1.0)."""
        return float(self.metric(example, prediction))


class ProgramRegistry:
    """A thread-safe mapping of signature names to :class:`ProgramSpec`."""

    def __init__(self) -> None:
        self._specs: dict[str, ProgramSpec] = {}
        self._lock = threading.Lock()

    def register(self, spec: ProgramSpec) -> ProgramSpec:
        with self._lock:
            existing = self._specs.get(spec.name)
            if existing is not None and existing.source != spec.source:
                raise DuplicateProgramError(
                    f"program '{spec.name}' is already registered by {existing.source}; "
                    f"{spec.source} cannot register it again (choose another signature name)"
                )
            self._specs[spec.name] = spec
        return spec

    def unregister(self, name: str) -> None:
        with self._lock:
            self._specs.pop(name, None)

    def get(self, name: str) -> ProgramSpec:
        try:
            return self._specs[name]
        except KeyError:
            known = sorted(self._specs)
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            listing = ", ".join(known) if known else "none"
            raise UnknownProgramError(f"unknown signature '{name}' (registered: {listing}){hint}") from None

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[ProgramSpec]:
        return iter([self._specs[n] for n in self.names()])

    def __len__(self) -> int:
        return len(self._specs)


REGISTRY = ProgramRegistry()


def program(
    name: str,
    *,
    metric: Metric,
    signature: type[dspy.Signature] | None = None,
    description: str = "",
    data: dict[str, str | Path] | None = None,
    label_field: str | None = None,
    category: Callable[[dict[str, Any]], str] | None = None,
    registry: ProgramRegistry | None = None,
) -> Callable[[Factory], Factory]:
    """Register a DSPy program factory under a signature name.

    ``metric(example, prediction, trace=None)`` scores one prediction; ``signature``
    defaults to the signature of the module's only predictor. ``data`` may name
    bundled ``train``/``test`` files; ``label_field`` is the output used to
    balance few-shot demos across classes; ``category(values)`` names an example's
    category for the data pipeline's diversity checks (default: the label).
    """
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise InvalidProgramError(
            f"invalid signature name {name!r}: use letters, digits and underscores, starting with a letter"
        )
    _check_metric(name, metric)

    def decorator(factory: Factory) -> Factory:
        if not callable(factory):
            raise InvalidProgramError(f"program '{name}': the factory must be callable, got {factory!r}")
        module = _checked_module(name, factory)
        sig = signature or _derive_signature(name, module)
        if not (isinstance(sig, type) and issubclass(sig, dspy.Signature)):
            raise InvalidProgramError(f"program '{name}': signature must be a dspy.Signature class, got {sig!r}")
        if label_field is not None and label_field not in sig.output_fields:
            raise InvalidProgramError(f"program '{name}': label_field '{label_field}' is not an output field")
        spec = ProgramSpec(
            name=name,
            factory=factory,
            metric=metric,
            signature=sig,
            description=description or _first_line(sig.instructions),
            data={k: Path(v) for k, v in (data or {}).items()},
            label_field=label_field,
            category_fn=category,
        )
        (registry if registry is not None else REGISTRY).register(spec)
        return factory

    return decorator


def _first_line(text: str | None) -> str:
    lines = (text or "").strip().splitlines()
    return lines[0] if lines else ""


def _checked_module(name: str, factory: Factory) -> dspy.Module:
    try:
        module = factory()
    except Exception as exc:
        raise InvalidProgramError(f"program '{name}': the factory raised {type(exc).__name__}: {exc}") from exc
    if not isinstance(module, dspy.Module):
        raise InvalidProgramError(
            f"program '{name}': the factory must return a dspy.Module, got {type(module).__name__}"
        )
    return module


def _derive_signature(name: str, module: dspy.Module) -> type[dspy.Signature]:
    predictors = module.predictors()
    if len(predictors) != 1:
        raise InvalidProgramError(
            f"program '{name}': the module has {len(predictors)} predictors; pass signature= to program()"
        )
    sig = predictors[0].signature
    if isinstance(module, dspy.ChainOfThought) and "reasoning" in sig.output_fields:
        sig = sig.delete("reasoning")
    return sig


def _check_metric(name: str, metric: Metric) -> None:
    if not callable(metric):
        raise InvalidProgramError(f"program '{name}': metric must be callable, got {metric!r}")
    try:
        params = inspect.signature(metric)
    except (TypeError, ValueError):
        return  # builtins without a signature: trust them
    for args in ((object(), object()), (object(), object(), None)):
        try:
            params.bind(*args)
        except TypeError:
            raise InvalidProgramError(
                f"program '{name}': metric {getattr(metric, '__qualname__', metric)}{params} must accept "
                "(example, prediction, trace=None)"
            ) from None
