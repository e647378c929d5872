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
A deploy decision registers the candidate version and starts an A/B experiment.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import os
import queue as queue_module
import random
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.data.records import DIFFICULTIES, ExampleRecord, read_batch, write_batch
from ratchet.errors import DataError, RatchetError
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.atomic import atomic_write_json
from ratchet.store.private import make_private_dir, private_opener

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
    optimizer: str = "mipro"
    min_improvement: float = 5.0
    output_dir: Path | None = None  # default: <home>/runs
    dry_run: bool = False
    repo_path: Path = Path(".")
    since_days: int = 90
    strict: bool = True
    min_examples: int = 30
    seed: int = 0
    start_experiment: bool = True
    timeouts: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_TIMEOUTS))


class PhaseFailed(RatchetError):
    """A phase ended without its result (the message says why)."""


# -- phases (each runs in a child process; arguments and results are plain data) ----------------

def _settings(payload: dict[str, Any]) -> Settings:
    return Settings(**payload["settings"])


def _registry(settings: Settings) -> ProgramRegistry:
    from ratchet.programs import load_programs

    return load_programs(settings)


def phase_collect(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.data.collect import GitCollector, SyntheticCollector, TelemetryCollector
    from ratchet.data.collect.mappers import git_mappers
    from ratchet.data.collect.synthetic import load_seed_examples
    from ratchet.lm.setup import build_lms
    from ratchet.telemetry.writer import iter_log_files

    settings = _settings(payload)
    registry = _registry(settings)
    signature = payload["signature"]
    spec = registry.get(signature)
    out = Path(payload["run_dir"]) / "collected_data"
    sources: dict[str, Any] = {}
    logs = iter_log_files(settings.home_dir / "telemetry") if (settings.home_dir / "telemetry").is_dir() else []
    if logs:
        report = TelemetryCollector(logs, registry, signature=signature).collect(out / "telemetry", progress=progress)
        sources["telemetry"] = {"collected": report.collected, "target": payload["telemetry_target"],
                                "summary": report.summary()}
    if signature in git_mappers() and payload["git_target"] > 0:
        report = GitCollector(Path(payload["repo_path"]), registry, signature=signature,
                              target=payload["git_target"], since_days=payload["since_days"]).collect(
            out / "git", progress=progress)
        sources["git"] = {"collected": report.collected, "target": payload["git_target"], "summary": report.summary()}
    if payload["synthetic_target"] > 0:
        try:
            seeds, _ = load_seed_examples(spec, home=settings.home_dir)
        except DataError as exc:
            sources["synthetic"] = {"collected": 0, "target": payload["synthetic_target"], "summary": str(exc)}
        else:
            report = SyntheticCollector(spec, build_lms(settings.lm), seeds, target=payload["synthetic_target"],
                                        seed=payload["seed"]).collect(out / "synthetic", progress=progress)
            sources["synthetic"] = {"collected": report.collected, "target": payload["synthetic_target"],
                                    "summary": report.summary()}
    collected = sum(min(s["collected"], s["target"]) if s["target"] else s["collected"] for s in sources.values())
    target = sum(s["target"] or 0 for s in sources.values()) or payload["min_examples"]
    needed = max(payload["min_examples"], target // 2)
    if collected < needed:
        found = ", ".join(f"{name} {info['collected']}" for name, info in sources.items()) or "none"
        raise PhaseFailed(f"collected: {collected} examples, target: {target} (need at least {needed}; "
                          f"sources: {found})")
    return {"collected": collected, "target": target, "sources": sources}


def phase_validate(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.data.datasets import DatasetStore
    from ratchet.data.validate import validate_examples

    settings = _settings(payload)
    registry = _registry(settings)
    spec = registry.get(payload["signature"])
    run_dir = Path(payload["run_dir"])
    records: list[ExampleRecord] = []
    rng = random.Random(payload["seed"])
    targets = {"telemetry": payload["telemetry_target"], "git": payload["git_target"],
               "synthetic": payload["synthetic_target"]}
    for source_dir in sorted((run_dir / "collected_data").iterdir()):
        path = source_dir / f"{spec.name}.jsonl"
        if not path.is_file():
            continue
        batch = read_batch(path, signature=spec.name)
        cap = targets.get(source_dir.name)
        if cap and len(batch) > cap:  # keep the target's worth, a seeded sample across the batch
            batch = rng.sample(batch, cap)
        records.extend(batch)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    existing = store.load(spec.name).records if store.latest_version(spec.name) else []
    result = validate_examples(records, spec, settings.data, existing=existing,
                               on_progress=lambda done: progress(done, len(records), "validating"))
    out = run_dir / "validated_data"
    write_batch(out / f"{spec.name}.jsonl", result.accepted)
    write_batch(out / f"{spec.name}.rejected.jsonl", [r.record for r in result.rejected])
    atomic_write_json(out / f"{spec.name}.validation_report.json", result.report.to_dict())
    if not result.accepted:
        raise PhaseFailed(f"validation accepted none of {len(records)} examples "
                          f"({', '.join(f'{k} {v}' for k, v in result.report.rejections.items())})")
    return {"examples": len(records), "accepted": len(result.accepted), "rejected": len(result.rejected),
            "rejections": result.report.rejections, "quality": result.report.quality}


def balance_difficulty(records: list[ExampleRecord], targets: dict[str, float], seed: int, minimum: int,
                       tolerance: float = 0.0) -> list[ExampleRecord]:
    """The largest random subset whose difficulty shares are each within ``tolerance / 2`` of ``targets``
    (half the gate's tolerance: a margin that survives rounding), or all records when that would leave fewer
    than ``minimum`` or a wanted difficulty is missing."""
    groups = {d: [r for r in records if r.difficulty == d] for d in DIFFICULTIES}
    wanted = {d: share for d, share in targets.items() if share > 0}
    if not wanted or any(not groups.get(d) for d in wanted):
        return records
    margin = tolerance / 2
    available = {d: len(groups[d]) for d in DIFFICULTIES}
    for total in range(len(records), max(minimum, 1) - 1, -1):  # the largest feasible size wins
        target = {d: targets.get(d, 0.0) * total for d in DIFFICULTIES}
        lower = {d: max(math.ceil(target[d] - margin * total), 0) for d in DIFFICULTIES}
        upper = {d: min(available[d], math.floor(target[d] + margin * total)) for d in DIFFICULTIES}
        if any(lower[d] > upper[d] for d in DIFFICULTIES) or not sum(lower.values()) <= total <= sum(upper.values()):
            continue
        take = dict(lower)
        for d in sorted(DIFFICULTIES, key=lambda d: take[d] - target[d]):  # furthest below its target first
            take[d] += min(upper[d] - take[d], total - sum(take.values()))
        break
    else:
        return records
    rng = random.Random(seed)
    chosen = [r for d in DIFFICULTIES for r in rng.sample(groups[d], take[d])]
    return sorted(chosen, key=lambda r: r.id)


def cap_sources(records: list[ExampleRecord], max_share: float, seed: int, minimum: int) -> list[ExampleRecord]:
    """Drop random surplus examples of the largest source until it is at most ``max_share`` of the batch."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.source] = counts.get(record.source, 0) + 1
    if len(counts) < 2:
        return records
    top, top_n = max(counts.items(), key=lambda item: item[1])
    others = len(records) - top_n
    allowed = int(max_share * others / (1 - max_share)) if max_share < 1 else top_n
    if top_n <= allowed or others + allowed < minimum:
        return records
    rng = random.Random(seed)
    keep = set(map(id, rng.sample([r for r in records if r.source == top], allowed)))
    return [r for r in records if r.source != top or id(r) in keep]


def phase_gate(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.data.gates import gate_thresholds, run_gates

    settings = _settings(payload)
    signature = payload["signature"]
    run_dir = Path(payload["run_dir"])
    records = read_batch(run_dir / "validated_data" / f"{signature}.jsonl", signature=signature)
    thresholds = gate_thresholds(signature, settings.data)
    # Curate before gating: trim the batch toward the target difficulty mix, then trim the dominant source.
    balanced = balance_difficulty(records, thresholds.difficulty_targets, payload["seed"], payload["min_examples"],
                                  thresholds.difficulty_tolerance)
    balanced = cap_sources(balanced, thresholds.max_source_share, payload["seed"], payload["min_examples"])
    report = run_gates(balanced, thresholds, signature=signature)
    write_batch(run_dir / "validated_data" / f"{signature}.gated.jsonl", balanced)
    atomic_write_json(run_dir / "quality_reports" / f"{signature}.json",
                      {**report.to_dict(), "examples_before_balancing": len(records), "examples": len(balanced),
                       "strict": payload["strict"]})
    if not report.passed and payload["strict"]:
        raise PhaseFailed("quality gates failed: " + "; ".join(f"{c.name}: {c.message}" for c in report.failed))
    return {"passed": report.passed, "examples": len(balanced), "trimmed": len(records) - len(balanced),
            "failed_checks": [c.name for c in report.failed]}


def phase_version(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.data.datasets import DatasetStore

    settings = _settings(payload)
    signature = payload["signature"]
    records = read_batch(Path(payload["run_dir"]) / "validated_data" / f"{signature}.gated.jsonl",
                         signature=signature)
    result = DatasetStore(settings.home_dir, settings.data, registry=_registry(settings)).add(
        signature, records, source="cycle", notes=f"ratchet cycle {payload['run_id']}")
    return {"dataset_version": result.version, "parent": result.parent, "examples": result.example_count,
            "added": result.added, "duplicates": len(result.duplicates), "rejected": len(result.rejected)}


def phase_optimize(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.optimize.run import run_optimization

    settings = _settings(payload)
    signature = payload["signature"]
    run_dir = Path(payload["run_dir"])
    records = None
    if payload["dry_run"]:
        records = read_batch(run_dir / "validated_data" / f"{signature}.gated.jsonl", signature=signature)
    result = run_optimization(
        settings, _registry(settings), signature, dataset_version=payload.get("dataset_version") or "latest",
        optimizer=payload["optimizer"], auto=payload["auto"], trials=payload["trials"], seed=payload["seed"],
        min_improvement=payload["min_improvement"], save_candidate=not payload["dry_run"], records=records,
        progress=lambda phase, done, total: progress(done, total, phase),
    )
    data = result.to_dict()
    atomic_write_json(run_dir / "optimization_results" / f"{signature}.json", data)
    return {k: data[k] for k in ("optimizer", "parameters", "dataset_version", "baseline_version",
                                 "candidate_version", "sizes", "baseline", "candidate", "comparison", "decision",
                                 "usage", "seconds")}


PHASE_FUNCTIONS = {"collect": phase_collect, "validate": phase_validate, "gate": phase_gate,
                   "version": phase_version, "optimize": phase_optimize}


def _child(name: str, payload: dict[str, Any], results: Any, dspy_log_level: int) -> None:
    logging.getLogger("dspy").setLevel(dspy_log_level)  # the parent's choice (``ratchet -v`` logs DSPy's INFO)
    # Optimizers print and draw tqdm bars; the console shows one Rich progress bar, the run keeps the rest in logs/.
    _redirect_output(Path(payload["run_dir"]) / "logs" / f"{payload['signature']}.{name}.log")

    def progress(done: int, total: int | None, status: str) -> None:
        results.put(("progress", done, total, status))

    try:
        from ratchet.lm.setup import configure_dspy

        # DSPy's cache under the home directory, the configured LM/adapter; the embedded model self-tested first,
        # so a llama.cpp crash fails the phase with its reason instead of killing it silently.
        configure_dspy(_settings(payload)).prepare()
        results.put(("ok", PHASE_FUNCTIONS[name](payload, progress)))
    except PhaseFailed as exc:
        results.put(("failed", str(exc), None))
    except RatchetError as exc:
        results.put(("failed", f"{type(exc).__name__}: {exc}", None))
    except BaseException as exc:  # a bug or a crash in user code: keep the traceback for the summary
        results.put(("failed", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=8)))


def _redirect_output(path: Path) -> None:
    """Send this process's stdout and stderr (file descriptors included) to ``path``."""
    make_private_dir(path.parent)
    log = open(path, "ab", buffering=0, opener=private_opener)  # noqa: SIM115 - lives as long as the process
    for stream, fd in ((sys.stdout, 1), (sys.stderr, 2)):
        if stream is not None:
            stream.flush()
        os.dup2(log.fileno(), fd)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 - lives as long as the process
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def run_phase(name: str, payload: dict[str, Any], timeout: float,
              on_progress: Callable[[int, int | None, str], None] | None = None) -> dict[str, Any]:
    """Run one phase in a child process; returns ``{"status", "seconds", "result" | "error"}``."""
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    dspy_log_level = logging.getLogger("dspy").getEffectiveLevel()
    process = ctx.Process(target=_child, args=(name, payload, results, dspy_log_level), daemon=True)
    started = time.perf_counter()
    process.start()
    outcome: dict[str, Any] | None = None
    while outcome is None:
        remaining = timeout - (time.perf_counter() - started)
        if remaining <= 0:
            process.kill()
            outcome = {"status": "timeout", "error": f"{name} timed out after {timeout:g} s"}
            break
        try:
            message = results.get(timeout=min(remaining, 0.5))
        except queue_module.Empty:
            if not process.is_alive() and results.empty():
                outcome = {"status": "failed", "error": f"{name} process died (exit code {process.exitcode})"}
            continue
        if message[0] == "progress":
            if on_progress is not None:
                on_progress(*message[1:])
        elif message[0] == "ok":
            outcome = {"status": "ok", "result": message[1]}
        else:
            outcome = {"status": "failed", "error": message[1]}
            if message[2]:
                outcome["traceback"] = message[2]
    process.join(timeout=10)
    if process.is_alive():
        process.kill()
    outcome["seconds"] = round(time.perf_counter() - started, 2)
    return outcome


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
        "seed": options.seed, "optimizer": options.optimizer, "auto": options.auto, "trials": options.trials,
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
                          result={k: data[k] for k in ("optimizer", "parameters", "usage", "candidate_version",
                                                       "dataset_version", "sizes")})
            outcome["phases"]["optimize"] = result
            outcome["phases"]["evaluate"] = {"status": "ok", "seconds": seconds.get("evaluate"), "result": {
                k: data[k] for k in ("baseline_version", "baseline", "candidate", "comparison")}}
            outcome.update(decision=data["decision"], candidate_version=data["candidate_version"],
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
    if decision["deploy"] and not options.dry_run and options.start_experiment:
        from ratchet.rollout import RolloutController

        experiment_id = f"{signature}_{run_id.removeprefix('run_')}"
        try:
            experiment = RolloutController(settings, registry).start(
                signature, outcome["candidate_version"], experiment_id=experiment_id, actor=f"cycle:{run_id}")
        except RatchetError as exc:
            result.update(status="failed", error=f"could not start the A/B experiment: {exc}")
        else:
            outcome.update(deployed=True, experiment_id=experiment.experiment_id)
            result["experiment_id"] = experiment.experiment_id
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def _absolute(entry: str, base: Path) -> str:
    """Program sources as the child processes must see them (files relative to the config)."""
    if entry.endswith(".py") or "/" in entry:
        path = Path(entry)
        return str(path if path.is_absolute() else (base / path).resolve())
    return entry

