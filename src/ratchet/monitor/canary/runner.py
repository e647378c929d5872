"""Run the canaries: score production and every live experiment's versions on each signature's probes.

:func:`run_canaries` is safe to call every minute (the controller calls it each tick): a
signature runs only when it is *due* — one of its current versions (production, and both arms
of its live experiment) has no run on the current probe set within ``interval_minutes`` (so a
new candidate is scored at the next call). When it runs, every current version is scored in
one *pass* (same probes, back to back), so the rollout trigger compares pairs measured under
the same conditions. Results go to the state database (``canary_runs``) and, after a pass, to
``<home>/metrics/ratchet_canary.prom``.

The LM is built only when something is due, without DSPy's response cache (a cached answer
would hide the model changing underneath) and without history (a long-running controller
would keep every prompt). A version that cannot be loaded is reported and skipped; a probe
whose call fails scores 0 and is counted.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.errors import RatchetError
from ratchet.evaluation.runner import evaluate_program
from ratchet.lm.setup import LMBundle, build_lms
from ratchet.monitor.canary.degradation import Degradation, production_degradation
from ratchet.monitor.canary.exposition import SignatureSnapshot, write_metrics
from ratchet.monitor.canary.probes import ProbeSet, ensure_probes
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramRegistry, ProgramSpec
from ratchet.programs.versions import VersionStore
from ratchet.rollout.canary import canary_check
from ratchet.rollout.experiments import LIVE, Experiment, ExperimentStore
from ratchet.rollout.sequential import Check
from ratchet.store.canaries import CanaryRun, last_canary_runs, record_canary_runs
from ratchet.store.db import StateDB

__all__ = ["CanaryReport", "Progress", "SignatureCanary", "VersionRun", "canary_targets", "run_canaries"]

Progress = Callable[[str, str, int, int], None]
"""``on_progress(signature, version, done, total)``: called at the start of each version and after each probe."""


@dataclass
class VersionRun:
    """One version's part of a pass: its run, or why it has none."""

    version: str
    roles: list[str]
    run: CanaryRun | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"version": self.version, "roles": self.roles, "error": self.error,
                **({"run": self.run.to_dict()} if self.run else {})}


@dataclass
class SignatureCanary:
    """What one call did for one signature."""

    signature: str
    status: str = "not_due"  # "ran", "not_due", "off", "no_probes" or "error"
    reason: str | None = None
    probes: ProbeSet | None = None
    versions: list[VersionRun] = field(default_factory=list)
    next_due: float | None = None
    degradation: Degradation | None = None
    experiments: dict[str, Check] = field(default_factory=dict)  # experiment id → the canary trigger's verdict

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason,
                "probes": self.probes.to_dict() if self.probes else None,
                "versions": [v.to_dict() for v in self.versions], "next_due": self.next_due,
                "degradation": self.degradation.to_dict() if self.degradation else None,
                "experiments": {k: c.to_dict() for k, c in self.experiments.items()}}


@dataclass
class CanaryReport:
    """Every registered (or chosen) signature's outcome of one call."""

    at: float
    signatures: dict[str, SignatureCanary]
    textfile: Path | None = None

    @property
    def ran(self) -> list[str]:
        return [name for name, sig in self.signatures.items() if sig.status == "ran"]

    def to_dict(self) -> dict[str, Any]:
        return {"at": self.at, "ran": self.ran, "textfile": str(self.textfile) if self.textfile else None,
                "signatures": {name: sig.to_dict() for name, sig in self.signatures.items()}}


def canary_targets(production: str, experiments: Iterable[Experiment]) -> dict[str, list[str]]:
    """The versions a signature's canaries score, each with its roles (production, baseline/candidate of …)."""
    targets: dict[str, list[str]] = {production: ["production"]}
    for exp in experiments:
        targets.setdefault(exp.baseline_version, []).append(f"baseline of {exp.experiment_id}")
        targets.setdefault(exp.candidate_version, []).append(f"candidate of {exp.experiment_id}")
    return targets


def run_canaries(settings: Settings, registry: ProgramRegistry, *, db: StateDB, lms: LMBundle | None = None,
                 now: float | None = None, signatures: Iterable[str] | None = None, force: bool = False,
                 probe_file: Path | None = None, on_progress: Progress | None = None) -> CanaryReport:
    """Score every due signature's current versions on its probes; record and export the results.

    ``force`` runs whatever the interval (and even with canaries off); ``probe_file`` replaces the
    probes of the chosen signature(s) for this call; ``lms`` defaults to the configured models.
    """
    now = time.time() if now is None else now
    canary = settings.monitor.canary
    versions = VersionStore(settings.home_dir, db)
    pointers = ProductionPointers(db, versions)
    datasets = DatasetStore(settings.home_dir, settings.data, registry=registry)
    live: dict[str, list[Experiment]] = {}
    for exp in ExperimentStore(db).list(statuses=LIVE):
        live.setdefault(exp.signature, []).append(exp)
    specs = [registry.get(name) for name in signatures] if signatures is not None else list(registry)
    files = {name: settings.resolve(path) for name, path in canary.probe_files.items()}
    report = CanaryReport(now, {})
    built: list[LMBundle] = [lms] if lms is not None else []

    def models() -> LMBundle:
        if not built:
            built.append(build_lms(settings.lm, cache=False).prepare())
        return built[0]

    for spec in specs:
        outcome = SignatureCanary(spec.name)
        report.signatures[spec.name] = outcome
        if not canary.enabled and not force:
            outcome.status, outcome.reason = "off", "canaries are off (monitor.canary.enabled = false)"
            continue
        try:
            outcome.probes = ensure_probes(spec, settings.home_dir, canary, pointers=pointers, datasets=datasets,
                                           path=probe_file or files.get(spec.name))
            targets = canary_targets(pointers.get(spec.name), live.get(spec.name, []))
        except RatchetError as exc:
            outcome.status, outcome.reason = "error", str(exc)
            continue
        if not outcome.probes.examples:
            outcome.status, outcome.reason = "no_probes", outcome.probes.description
            continue
        outcome.versions = [VersionRun(version, roles) for version, roles in targets.items()]
        outcome.next_due = _next_due(db, spec.name, outcome.probes.fingerprint, targets, canary.interval_minutes)
        if not force and outcome.next_due > now:
            outcome.status = "not_due"
            continue
        try:
            bundle = models()
        except RatchetError as exc:  # e.g. the embedded model cannot run here, or an API key is missing
            outcome.status, outcome.reason = "error", f"the model is not available: {exc}"
            continue
        _run_pass(spec, outcome, versions, bundle, on_progress)
        record_canary_runs(db, [v.run for v in outcome.versions if v.run is not None])
        outcome.status = "ran"
        outcome.next_due = time.time() + canary.interval_minutes * 60
    if report.ran:
        snapshots = canary_snapshots(settings, registry, db=db, pointers=pointers, live=live)
        for snap in snapshots:
            if snap.signature in report.ran:
                _verdicts(report.signatures[snap.signature], snap, live.get(snap.signature, []), settings)
        report.textfile = write_metrics(settings.home_dir, snapshots)
    return report


def _next_due(db: StateDB, signature: str, probe_set: str, targets: dict[str, list[str]],
              interval_minutes: float) -> float:
    """When the signature is due: the oldest current version's newest run on these probes, plus the interval."""
    newest = last_canary_runs(db, signature)
    stamps = [run.at if (run := newest.get((signature, v))) is not None and run.probe_set == probe_set else 0.0
              for v in targets]
    return min(stamps) + interval_minutes * 60 if stamps and min(stamps) > 0 else 0.0


def _run_pass(spec: ProgramSpec, outcome: SignatureCanary, versions: VersionStore, lms: LMBundle,
              on_progress: Progress | None) -> None:
    """Score every version of ``outcome`` on its probes, one after the other, as one pass."""
    probes = outcome.probes
    assert probes is not None
    pass_id = uuid.uuid4().hex[:16]
    for target in outcome.versions:
        try:
            program = versions.load(spec, target.version)
        except RatchetError as exc:
            target.error = str(exc)
            continue
        target.run = _score(spec, target.version, program, probes, lms, pass_id, on_progress)


def _score(spec: ProgramSpec, version: str, program: dspy.Module, probes: ProbeSet, lms: LMBundle, pass_id: str,
           on_progress: Progress | None) -> CanaryRun:
    """One version's run on the probes (a failing probe scores 0 and is counted)."""
    total, done = len(probes), [0]

    def advanced(_result: Any) -> None:
        done[0] += 1
        if on_progress:
            on_progress(spec.name, version, done[0], total)

    if on_progress:
        on_progress(spec.name, version, 0, total)
    started = time.perf_counter()
    with dspy.context(trace=None, disable_history=True):
        report = evaluate_program(program, probes.examples, spec.metric, lm=lms.task, adapter=lms.adapter,
                                  on_result=advanced)
    return CanaryRun(signature=spec.name, version=version, at=time.time(), probe_set=probes.fingerprint, n=report.n,
                     score=report.score, errors=report.errors, parse_failures=report.parse_failures,
                     seconds=time.perf_counter() - started,
                     scores={probes.ids[r.index]: r.score for r in report.results}, pass_id=pass_id)


def canary_snapshots(settings: Settings, registry: ProgramRegistry, *, db: StateDB, pointers: ProductionPointers,
                     live: dict[str, list[Experiment]]) -> list[SignatureSnapshot]:
    """Each registered signature's newest run per current version, and production's degradation verdict."""
    newest = last_canary_runs(db)
    snapshots = []
    for spec in registry:
        try:
            production = pointers.get(spec.name)
        except RatchetError:
            continue
        targets = canary_targets(production, live.get(spec.name, []))
        runs = {v: newest[(spec.name, v)] for v in targets if (spec.name, v) in newest}
        if runs:
            snapshots.append(SignatureSnapshot(spec.name, runs, production_degradation(
                db, spec.name, production, settings.monitor.canary)))
    return snapshots


def _verdicts(outcome: SignatureCanary, snap: SignatureSnapshot, experiments: list[Experiment],
              settings: Settings) -> None:
    """Production's degradation and, per live experiment, what the canary trigger says about this pass."""
    canary = settings.monitor.canary
    outcome.degradation = snap.degradation
    runs = {v.version: v.run for v in outcome.versions}
    for exp in experiments:
        outcome.experiments[exp.experiment_id] = canary_check(
            runs.get(exp.baseline_version), runs.get(exp.candidate_version), max_drop=canary.max_candidate_drop,
            alpha=canary.alpha, min_probes=canary.min_probes)
