"""``ratchet cycle``: collect → validate → gate → version → optimize → evaluate → decide, per signature.

Each phase of each signature runs in its own child process with a timeout, so a
hung optimizer or a crashing program stops only that signature. Everything a run
produces lands in one directory (seed 001's layout)::

    <output>/run_YYYYmmdd_HHMMSS/
      orchestration_summary.json     every phase's outcome, counts, durations and errors
      collected_data/<source>/       raw examples per source (telemetry, git, synthetic)
      validated_data/                accepted / rejected examples and the validation reports
      quality_reports/               quality-gate reports
      optimization_results/          the optimizer's report and the paired evaluation

Before the quality gates run, the batch is curated: trimmed toward the target
difficulty mix and so that no source exceeds its maximum share (random surplus
examples are dropped, never changed); the gates then judge what would be stored.
A deploy decision registers the candidate version and starts an A/B experiment. When the signature has a
golden set, the decision also reports the candidate's golden score against the baseline's (``golden``,
paired on the same examples); it informs the operator and the daily eval regression, it does not gate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.errors import RatchetError
from ratchet.loop.phase_runner import run_phase
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.atomic import atomic_write_json
from ratchet.store.private import make_private_dir

__all__ = ["PHASES", "CycleOptions", "run_cycle"]

PHASES = ("collect", "validate", "gate", "version", "optimize", "evaluate", "decide")
DEFAULT_TIMEOUTS = {"collect": 3600.0, "validate": 1800.0, "gate": 600.0, "version": 600.0, "optimize": 4 * 3600.0}

Report = Callable[[str, str, str], None]  # signature, phase, status text


@dataclass
class CycleOptions:
    """What ``ratchet cycle`` does; defaults follow seed 001."""

    signatures: list[str] | None = None
    git_target: int = 30
    synthetic_target: int = 20
    telemetry_target: int | None = None  # None: every usable telemetry example
    trials: int | None = 50
    auto: str | None = None
    optimizer: str | None = None  # None: optimize.optimizer in the settings
    budget_minutes: float | None = None  # None: optimize.budget_minutes in the settings
    min_improvement: float = 5.0
    output_dir: Path | None = None  # default: <home>/runs
    dry_run: bool = False
    repo_path: Path = Path(".")
    since_days: int = 90
    strict: bool = True
    min_examples: int = 30
    seed: int = 0
    start_experiment: bool = True
    trigger: str | None = None  # why this cycle runs, when a live trigger started it (recorded in the summary)
    timeouts: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))


# -- the run ------------------------------------------------------------------------------------

def run_cycle(settings: Settings, registry: ProgramRegistry, options: CycleOptions,
              report: Report | None = None) -> dict[str, Any]:
    """Run the whole cycle; returns (and writes) the orchestration summary."""
    report = report or (lambda signature, phase, status: None)
    make_private_dir(settings.home_dir)  # before any phase: DSPy's cache, datasets and versions go under it
    started = datetime.now(UTC)
    run_id = f"run_{started.strftime('%Y%m%d_%H%M%S')}"
    output = options.output_dir or settings.home_dir / "runs"
    run_dir = Path(output) / run_id
    suffix = 1
    while run_dir.exists():  # two cycles in the same second
        run_dir = Path(output) / f"{run_id}_{suffix}"
        suffix += 1
    run_id = run_dir.name
    for sub in ("collected_data", "validated_data", "quality_reports", "optimization_results", "logs"):
        make_private_dir(run_dir / sub)  # runs hold collected examples and model output: owner-only
    signatures = options.signatures or registry.names()
    for name in signatures:
        registry.get(name)  # unknown names: a clear error before anything runs
    settings_data = settings.model_dump()  # python mode: secrets stay SecretStr (JSON mode would mask them)
    settings_data["home"] = str(settings.home_dir)
    settings_data["programs"] = [_absolute(entry, settings.base_dir) for entry in settings.programs]
    summary: dict[str, Any] = {
        "run_id": run_id, "started_at": started.isoformat(timespec="seconds"), "finished_at": None,
        "output_dir": str(run_dir), "dry_run": options.dry_run,
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(options).items()},
        "signatures": {}, "success": False, "improvement_percent": None, "errors": [],
        "trigger": options.trigger,
    }
    summary_path = run_dir / "orchestration_summary.json"
    atomic_write_json(summary_path, summary)
    for signature in signatures:
        outcome = _run_signature(signature, settings, registry, options, run_dir, run_id, settings_data, report)
        summary["signatures"][signature] = outcome
        summary["errors"].extend(f"{signature}: {e}" for e in outcome["errors"])
        atomic_write_json(summary_path, summary)  # progress is visible while later signatures run
    improvements = [s["improvement_percent"] for s in summary["signatures"].values()
                    if s.get("improvement_percent") is not None]
    summary["improvement_percent"] = max(improvements) if improvements else None
    summary["success"] = bool(summary["signatures"]) and all(s["success"] for s in summary["signatures"].values())
    summary["deployed"] = [name for name, s in summary["signatures"].items() if s.get("deployed")]
    summary["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    summary["seconds"] = round((datetime.now(UTC) - started).total_seconds(), 1)
    atomic_write_json(summary_path, summary)
    return summary


def _run_signature(signature: str, settings: Settings, registry: ProgramRegistry, options: CycleOptions,
                   run_dir: Path, run_id: str, settings_data: dict[str, Any], report: Report) -> dict[str, Any]:
    payload = {
        "settings": settings_data, "signature": signature, "run_dir": str(run_dir), "run_id": run_id,
        "git_target": options.git_target, "synthetic_target": options.synthetic_target,
        "telemetry_target": options.telemetry_target, "repo_path": str(Path(options.repo_path).resolve()),
        "since_days": options.since_days, "strict": options.strict, "min_examples": options.min_examples,
        "seed": options.seed, "optimizer": options.optimizer or settings.optimize.optimizer, "auto": options.auto,
        "trials": options.trials, "budget_minutes": options.budget_minutes,
        "min_improvement": options.min_improvement, "dry_run": options.dry_run,
    }
    outcome: dict[str, Any] = {"success": False, "phases": {}, "errors": [], "deployed": False,
                               "improvement_percent": None}
    plan = ["collect", "validate", "gate", "version", "optimize"]
    for phase in plan:
        if phase == "version" and options.dry_run:
            outcome["phases"]["version"] = {"status": "skipped", "seconds": 0.0, "reason": "dry run: nothing stored"}
            continue
        report(signature, phase, "running")
        result = run_phase(phase, payload, options.timeouts.get(phase, DEFAULT_TIMEOUTS["optimize"]),
                           on_progress=lambda done, total, status, p=phase: report(
                               signature, p, f"{status} {done}/{total}" if total else f"{status} {done}"))
        if phase == "optimize" and result["status"] == "ok":
            data = result.pop("result")
            seconds = data.pop("seconds")
            result.update(status="ok", seconds=seconds.get("optimize", result["seconds"]),
                          result={**{k: data[k] for k in ("optimizer", "parameters", "usage", "candidate_version",
                                                          "dataset_version", "sizes")},
                                  "excluded_golden": data.get("excluded_golden", 0)})
            outcome["phases"]["optimize"] = result
            outcome["phases"]["evaluate"] = {"status": "ok", "seconds": seconds.get("evaluate"), "result": {
                **{k: data[k] for k in ("baseline_version", "baseline", "candidate", "comparison")},
                "golden": data.get("golden")}}
            outcome.update(decision=data["decision"], candidate_version=data["candidate_version"],
                           golden=_golden_brief(data.get("golden")),
                           baseline_version=data["baseline_version"],
                           baseline_score=data["comparison"]["baseline_mean"],
                           candidate_score=data["comparison"]["candidate_mean"],
                           improvement_percent=data["comparison"]["relative_improvement_percent"])
        else:
            outcome["phases"][phase] = result
        report(signature, phase, result["status"])
        if result["status"] != "ok":
            outcome["errors"].append(f"{phase}: {result.get('error')}")
            for later in [*plan[plan.index(phase) + 1:], "evaluate", "decide"]:
                outcome["phases"].setdefault(later, {"status": "skipped", "seconds": 0.0,
                                                     "reason": f"{phase} did not complete"})
            return outcome
        if phase == "version":
            payload["dataset_version"] = result["result"]["dataset_version"]
            outcome["dataset_version"] = payload["dataset_version"]
        if phase == "collect":
            outcome["collected"] = result["result"]["collected"]
    outcome["phases"]["decide"] = _decide(signature, settings, registry, options, outcome, run_id)
    outcome["success"] = outcome["phases"]["decide"]["status"] == "ok"
    if not outcome["success"]:
        outcome["errors"].append(f"decide: {outcome['phases']['decide'].get('error')}")
    report(signature, "decide", outcome["phases"]["decide"]["status"])
    return outcome


def _decide(signature: str, settings: Settings, registry: ProgramRegistry, options: CycleOptions,
            outcome: dict[str, Any], run_id: str) -> dict[str, Any]:
    started = time.perf_counter()
    decision = outcome["decision"]
    result: dict[str, Any] = {"status": "ok", "deploy": decision["deploy"], "reason": decision["reason"]}
    if decision.get("golden"):
        result["golden"] = decision["golden"]  # the candidate on the golden set: reported, not gating
    if decision["deploy"] and not options.dry_run and options.start_experiment:
        from ratchet.loop.rollouts import rollout_controller

        experiment_id = f"{signature}_{run_id.removeprefix('run_')}"
        try:
            experiment = rollout_controller(settings, registry).start(
                signature, outcome["candidate_version"], experiment_id=experiment_id, actor=f"cycle:{run_id}")
        except RatchetError as exc:
            result.update(status="failed", error=f"could not start the A/B experiment: {exc}")
        else:
            outcome.update(deployed=True, experiment_id=experiment.experiment_id)
            result["experiment_id"] = experiment.experiment_id
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _golden_brief(golden: dict[str, Any] | None) -> dict[str, Any] | None:
    """The golden-set comparison as the summary carries it per signature (the full one is in the evaluate phase)."""
    if not golden:
        return None
    cmp = golden["comparison"]
    return {"golden_version": golden["golden_version"], "n": golden["n"], "baseline_score": cmp["baseline_mean"],
            "candidate_score": cmp["candidate_mean"], "mean_difference": cmp["mean_difference"],
            "ci_low": cmp["ci_low"], "ci_high": cmp["ci_high"], "p_value": cmp["p_value"], "worse": golden["worse"],
            "gates": False}


def _absolute(entry: str, base: Path) -> str:
    """Program sources as the child processes must see them (files relative to the config)."""
    if entry.endswith(".py") or "/" in entry:
        path = Path(entry)
        return str(path if path.is_absolute() else (base / path).resolve())
    return entry

