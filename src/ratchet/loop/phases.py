"""The phases of a cycle, each a function of a JSON payload that runs in its own process.

``collect`` (telemetry, git history, synthetic data) → ``validate`` (schema, quality, dedup) →
``gate`` (curate the batch toward the difficulty mix and source shares, then the quality gates) →
``version`` (store a dataset version) → ``optimize`` (optimize against production and evaluate the
pair on held-out data). A phase returns its summary or raises :class:`PhaseFailed` with the reason.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.data.records import DIFFICULTIES, ExampleRecord, read_batch, write_batch
from ratchet.errors import DataError, RatchetError
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.atomic import atomic_write_json

__all__ = ["PHASE_FUNCTIONS", "PhaseFailed", "balance_difficulty", "cap_sources", "settings_from_payload"]


class PhaseFailed(RatchetError):
    """A phase ended without its result (the message says why)."""


# -- phases (each runs in a child process; arguments and results are plain data) ----------------

def settings_from_payload(payload: dict[str, Any]) -> Settings:
    return Settings(**payload["settings"])


def _registry(settings: Settings) -> ProgramRegistry:
    from ratchet.programs import load_programs

    return load_programs(settings)


def phase_collect(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.data.collect import GitCollector, SyntheticCollector, TelemetryCollector
    from ratchet.data.collect.mappers import git_mappers
    from ratchet.data.collect.synthetic import load_seed_examples
    from ratchet.lm.setup import build_lms
    from ratchet.telemetry.database import telemetry_view
    from ratchet.telemetry.writer import iter_log_files

    settings = settings_from_payload(payload)
    registry = _registry(settings)
    signature = payload["signature"]
    spec = registry.get(signature)
    out = Path(payload["run_dir"]) / "collected_data"
    sources: dict[str, Any] = {}
    with telemetry_view(settings) as directory:  # every host's records with the shared (PostgreSQL) sink
        logs = iter_log_files(directory) if directory.is_dir() else []
        if logs:
            collector = TelemetryCollector(logs, registry, signature=signature,
                                           max_feedback_per_key=settings.data.max_feedback_per_key)
            report = collector.collect(out / "telemetry", progress=progress)
    if logs:
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

    settings = settings_from_payload(payload)
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

    settings = settings_from_payload(payload)
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
    from ratchet.data.golden import golden_input_hashes, without_golden

    settings = settings_from_payload(payload)
    registry = _registry(settings)
    signature = payload["signature"]
    records = read_batch(Path(payload["run_dir"]) / "validated_data" / f"{signature}.gated.jsonl",
                         signature=signature)
    # The leakage rule: an input in the golden set never enters the training data.
    records, excluded = without_golden(records, golden_input_hashes(settings, signature, registry=registry),
                                       registry.get(signature).schema)
    if not records:
        raise PhaseFailed(f"every gated example of {signature} is in its golden set ({excluded}); nothing to store")
    result = DatasetStore(settings.home_dir, settings.data, registry=registry).add(
        signature, records, source="cycle", notes=f"ratchet cycle {payload['run_id']}")
    return {"dataset_version": result.version, "parent": result.parent, "examples": result.example_count,
            "added": result.added, "duplicates": len(result.duplicates), "rejected": len(result.rejected),
            "excluded_golden": excluded}


def phase_optimize(payload: dict[str, Any], progress: Callable[[int, int | None, str], None]) -> dict[str, Any]:
    from ratchet.optimize.run import run_optimization

    settings = settings_from_payload(payload)
    signature = payload["signature"]
    run_dir = Path(payload["run_dir"])
    records = None
    if payload["dry_run"]:
        records = read_batch(run_dir / "validated_data" / f"{signature}.gated.jsonl", signature=signature)
    result = run_optimization(
        settings, _registry(settings), signature, dataset_version=payload.get("dataset_version") or "latest",
        optimizer=payload["optimizer"], auto=payload["auto"], trials=payload["trials"], seed=payload["seed"],
        min_improvement=payload["min_improvement"], save_candidate=not payload["dry_run"], records=records,
        budget_minutes=payload.get("budget_minutes"),
        progress=lambda phase, done, total: progress(done, total, phase),
    )
    data = result.to_dict()
    atomic_write_json(run_dir / "optimization_results" / f"{signature}.json", data)
    return {k: data[k] for k in ("optimizer", "parameters", "dataset_version", "baseline_version",
                                 "candidate_version", "sizes", "excluded_golden", "baseline", "candidate",
                                 "comparison", "decision", "usage", "seconds")}


PHASE_FUNCTIONS = {"collect": phase_collect, "validate": phase_validate, "gate": phase_gate,
                   "version": phase_version, "optimize": phase_optimize}
