"""Drift of every registered signature: its live window against its reference, one verdict per kind.

A signature is ``not_enough_data`` — never an error — when it has fewer than ``min_samples``
live calls in the window, or no reference anywhere; its reason says which. Otherwise each kind
it can be judged on (inputs always; outputs when it has a single ``Literal`` label) gets a verdict,
and the signature is ``drift`` when any verdict is flagged, else ``ok``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.monitor.drift.live import LiveCalls, TelemetryScan, read_live
from ratchet.monitor.drift.novelty import NoveltyIndex
from ratchet.monitor.drift.reference import Reference, load_reference
from ratchet.monitor.drift.verdicts import InputDrift, OutputDrift, judge_input, judge_output, label_field
from ratchet.monitor.state import iso
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramRegistry, ProgramSpec
from ratchet.programs.versions import VersionStore
from ratchet.store.db import StateDB
from ratchet.telemetry.database import telemetry_view

__all__ = ["KINDS", "DriftReport", "SignatureDrift", "assess_drift", "assess_signature"]

KINDS = ("output", "input")


@dataclass
class SignatureDrift:
    """One signature's verdicts (or why it has none)."""

    signature: str
    status: str = "not_enough_data"  # "ok", "drift" or "not_enough_data"
    reason: str | None = None
    live_n: int = 0
    in_window: int = 0
    versions: dict[str, int] = field(default_factory=dict)
    reference: Reference | None = None
    output: OutputDrift | None = None
    output_skipped: str | None = None
    input: InputDrift | None = None
    input_skipped: str | None = None

    @property
    def flagged(self) -> list[str]:
        """The kinds of drift found: ``"output"``, ``"input"``."""
        return [kind for kind, verdict in self._verdicts() if verdict is not None and verdict.flagged]

    @property
    def judged(self) -> list[str]:
        """The kinds that got a verdict."""
        return [kind for kind, verdict in self._verdicts() if verdict is not None]

    def _verdicts(self) -> tuple[tuple[str, OutputDrift | InputDrift | None], ...]:
        return (("output", self.output), ("input", self.input))

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "flagged": self.flagged, "live_n": self.live_n,
                "in_window": self.in_window, "versions": self.versions,
                "reference": self.reference.to_dict() if self.reference else None,
                "output": self.output.to_dict() if self.output else None, "output_skipped": self.output_skipped,
                "input": self.input.to_dict() if self.input else None, "input_skipped": self.input_skipped}


@dataclass
class DriftReport:
    """Every registered signature's drift over one window, and what reading the telemetry saw."""

    checked_at: float
    window_hours: float
    signatures: dict[str, SignatureDrift]
    telemetry: TelemetryScan
    unregistered: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"checked_at": iso(self.checked_at), "window_hours": self.window_hours,
                "signatures": {name: sig.to_dict() for name, sig in self.signatures.items()},
                "telemetry": self.telemetry.to_dict(), "unregistered_signatures": self.unregistered}


def assess_drift(settings: Settings, registry: ProgramRegistry, *, now: float | None = None) -> DriftReport:
    """Read the live window once, then judge every registered signature against its reference."""
    now = time.time() if now is None else now
    drift = settings.monitor.drift
    since_ms = int((now - drift.window_hours * 3600) * 1000)
    db = StateDB.connect(settings)
    with telemetry_view(settings, db, since_ms=since_ms) as directory:
        live, scan = read_live(directory, since_ms=since_ms, max_samples=drift.max_samples)
    pointers = ProductionPointers(db, VersionStore(settings.home_dir, db))
    datasets = DatasetStore(settings.home_dir, settings.data, registry=registry)
    signatures = {spec.name: assess_signature(spec, live.get(spec.name), settings, pointers=pointers,
                                              datasets=datasets) for spec in registry}
    return DriftReport(now, drift.window_hours, signatures, scan, sorted(set(live) - set(signatures)))


def assess_signature(spec: ProgramSpec, calls: LiveCalls | None, settings: Settings, *,
                     pointers: ProductionPointers, datasets: DatasetStore) -> SignatureDrift:
    """One signature's verdicts; the reference is only loaded when there are enough live calls to judge."""
    drift = settings.monitor.drift
    result = SignatureDrift(spec.name)
    if calls is not None:
        result.live_n, result.in_window, result.versions = len(calls), calls.in_window, dict(calls.versions)
    if result.live_n < drift.min_samples:
        result.reason = (f"not enough data: {result.live_n} successful baseline call(s) in the last "
                         f"{drift.window_hours:g} h (needs {drift.min_samples})")
        return result
    assert calls is not None
    reference, notes = load_reference(spec, pointers=pointers, datasets=datasets)
    if reference is None:
        result.reason = "not enough data: no reference training data (" + "; ".join(notes) + ")"
        return result
    result.reference = reference
    inputs = [values for values, _ in calls.calls]
    if reference.heldout:
        index = NoveltyIndex(spec.schema, reference.train, drift.similarity_threshold, settings.data)
        result.input = judge_input(index.novel(inputs), len(inputs), index.novel(reference.heldout),
                                   len(reference.heldout), drift)
    else:
        result.input_skipped = "no held-out reference inputs to say what normal novelty is"
    name, choices, why = label_field(spec)
    if name is None:
        result.output_skipped = why
    else:
        labels = [str(outputs[name]) for _, outputs in calls.calls if outputs.get(name) is not None]
        known = [str(values[name]) for values in reference.train if values.get(name) is not None]
        if len(labels) < drift.min_samples or not known:
            result.output_skipped = (f"{len(labels)} live output(s) and {len(known)} training example(s) "
                                     f"with '{name}' (needs {drift.min_samples} and 1)")
        else:
            result.output = judge_output(name, choices, known, labels, drift)
    if result.judged:
        result.status = "drift" if result.flagged else "ok"
    else:
        result.reason = "not enough data: " + "; ".join(r for r in (result.input_skipped, result.output_skipped) if r)
    return result
