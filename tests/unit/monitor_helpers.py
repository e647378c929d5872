"""Crafted state for the monitoring tests: run summaries, experiments, per-arm counters, dataset records."""

import json
import os
import time
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.data.records import ExampleRecord
from ratchet.programs import ProgramRegistry
from ratchet.programs.versions import VersionStore
from ratchet.rollout.experiments import Experiment
from ratchet.store.db import StateDB
from ratchet.store.outcomes import OutcomeRecorder

SIG = "classify_intent"
BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"
DAY = 86400.0
INTENTS = {row["text"]: row["intent"] for name in ("train.jsonl", "test.jsonl")
           for row in map(json.loads, (BANKING.parent / name).read_text().splitlines())}
"""Every bundled Banking77 text and its intent."""


def respond_intent(prompt: str) -> str:
    """A scripted LM's answer: the right intent, except for a version whose instructions say BROKEN
    (always 'exchange_rate')."""
    if "BROKEN" in prompt:
        return " exchange_rate"
    return " " + INTENTS.get(prompt.rsplit("Text: ", 1)[-1].split("\nIntent:")[0], "card_arrival")


def write_run(settings: Settings, run_id: str, *, success: bool | None, started: float, errors: list[str] = (),
              deployed: list[str] = (), improvement: float | None = None, dry_run: bool = False,
              age_s: float | None = None) -> Path:
    """A run summary as ``ratchet cycle`` writes it (``success=None``: still running, no ``finished_at``)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(started))
    summary: dict[str, Any] = {"run_id": run_id, "started_at": stamp, "finished_at": None, "dry_run": dry_run,
                               "signatures": {}, "success": False, "improvement_percent": improvement,
                               "errors": list(errors)}
    if success is not None:
        summary.update(finished_at=stamp, success=success, deployed=list(deployed))
    path = settings.home_dir / "runs" / run_id / "orchestration_summary.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(summary))
    if age_s is not None:
        os.utime(path, (time.time() - age_s, time.time() - age_s))
    return path


def experiment(experiment_id: str, signature: str = SIG, stage_index: int = 0, status: str = "running"
               ) -> Experiment:
    return Experiment(experiment_id=experiment_id, signature=signature, baseline_version="v1",
                      candidate_version="v2", status=status, stages=[10, 25, 50, 75, 100],
                      stage_index=stage_index, stage_started_at=0.0, min_stage_minutes=60, min_stage_requests=100,
                      salt=experiment_id)


def count(db: StateDB, signature: str, version: str, arm: str, n: int, *, at: float | None = None,
          errors: int = 0, latency_s: float = 0.1, cost_usd: float = 0.0, tokens_in: int = 0,
          tokens_out: int = 0) -> None:
    """``n`` requests, the first ``errors`` of them failed (as in serving, failed requests report no usage)."""
    with OutcomeRecorder(db, flush_interval_s=60) as recorder:
        for i in range(n):
            ok = i >= errors
            recorder.record(signature, version, arm, latency_s=latency_s, success=ok,
                            error_type=None if ok else "timeout", cost_usd=cost_usd if ok else 0.0,
                            tokens_in=tokens_in if ok else 0, tokens_out=tokens_out if ok else 0, at=at)


def records(start: int, stop: int, quality: float) -> list[ExampleRecord]:
    rows = [json.loads(line) for line in BANKING.read_text().splitlines()[start:stop]]
    return [ExampleRecord(values=row, signature=SIG, source="git" if i % 2 else "synthetic", quality=quality,
                          difficulty=("easy", "medium", "hard")[i % 3]) for i, row in enumerate(rows)]


def broken_version(settings: Settings, registry: ProgramRegistry, signature: str = SIG) -> str:
    """A stored version whose instructions say BROKEN (the tests' scripted LMs then answer wrongly)."""
    spec = registry.get(signature)
    module = spec.build()
    module.signature = module.signature.with_instructions("BROKEN: answer anything.")
    return VersionStore(settings.home_dir).save(spec, module, lm="m", adapter="a").version
