"""Canaries on the embedded model: what a pass costs, and whether the rollout trigger tells good from bad.

    python benchmarks/canary_pass.py [--out benchmarks/results/canary_pass.json]

A temporary home with the bundled programs: production is the zero-shot ``classify_intent``; two
candidates are saved — **good** (20 class-balanced demos with their true labels) and **bad** (the same
demos, every label moved to another class). For each candidate a shadow experiment is started and
one forced canary pass (``run_canaries(force=True)``, the shipped probe set: 100 probes sampled from
the production version's test data) scores production and the candidate on the same probes; the
rollout's canary trigger (:func:`ratchet.rollout.canary.experiment_canary_check`) judges the pair.
A second pass over production alone checks that an unchanged version scores the same (no cache:
the answers are recomputed; the model's decoding is greedy).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ratchet.config import Settings
from ratchet.data.files import labelled_examples
from ratchet.data.sampling import balanced_demos
from ratchet.evaluation import attach_demos
from ratchet.lm.setup import build_lms
from ratchet.monitor.canary.runner import run_canaries
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.rollout.canary import experiment_canary_check
from ratchet.store.canaries import last_canary_runs
from ratchet.store.db import StateDB

SIG = "classify_intent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        registry = load_programs(settings)
        spec = registry.get(SIG)
        lms = build_lms(settings.lm, cache=False).prepare()
        demos = balanced_demos(labelled_examples(spec, None, split="train").examples, 20, spec.label_field, 0)
        labels = sorted({d[spec.label_field] for d in demos})
        wrong = [d.copy(**{spec.label_field: labels[(labels.index(d[spec.label_field]) + 3) % len(labels)]})
                 for d in demos]
        store = VersionStore(settings.home_dir)
        versions = {name: store.save(spec, attach_demos(spec.build(), chosen), lm=lms.model_id,
                                     adapter=lms.adapter_name).version for name, chosen in (("good", demos),
                                                                                             ("bad", wrong))}
        db = StateDB.connect(settings)
        controller = RolloutController(settings, registry, db=db)
        result: dict[str, object] = {}
        for name, version in versions.items():
            experiment = controller.start(SIG, version, experiment_id=f"canary_{name}", shadow=True)
            started = time.perf_counter()
            report = run_canaries(settings, registry, db=db, lms=lms, signatures=[SIG], force=True)
            seconds = time.perf_counter() - started
            runs = last_canary_runs(db, SIG)
            check = experiment_canary_check(db, controller.store.get(experiment.experiment_id),
                                            settings.monitor.canary)
            result[name] = {"probes": runs[(SIG, version)].n, "pass_seconds": round(seconds, 1),
                            "production_score": round(runs[(SIG, "base")].score, 3),
                            "candidate_score": round(runs[(SIG, version)].score, 3), "trigger_fired": check.fired,
                            "trigger": check.message, "status": report.signatures[SIG].status}
            controller.rollback(experiment.experiment_id, reason="benchmark done")
            print(f"{name}: {result[name]}", flush=True)
        first = last_canary_runs(db, SIG)[(SIG, "base")]
        run_canaries(settings, registry, db=db, lms=lms, signatures=[SIG], force=True)
        again = last_canary_runs(db, SIG)[(SIG, "base")]
        changed = sum(1 for key, score in first.scores.items() if again.scores.get(key) != score)
        result["production_repeat"] = {"score_first": round(first.score, 3), "score_again": round(again.score, 3),
                                       "probes_scored_differently": changed}
        db.dispose()
    out = {"machine": f"{platform.machine()} · {platform.system()}", "when": datetime.now().isoformat(
        timespec="seconds"), "command": "python benchmarks/canary_pass.py", "results": result}
    print(json.dumps(out, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
