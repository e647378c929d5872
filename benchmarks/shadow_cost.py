"""Shadow mode on the embedded model: what it costs users, and how fast it tells a good candidate from a bad one.

    python benchmarks/shadow_cost.py [--requests 40] [--blocks 3] [--out benchmarks/results/shadow_cost.json]

One in-process runtime (Gemma 3 270M, llama.cpp, 2 cores) answers Banking77 test messages for
``classify_intent`` (production: the bundled zero-shot program). Two candidates are saved:

* **good** — 20 class-balanced demos with their true labels;
* **bad** — the same 20 demos with every label replaced by another class's (demos that teach wrong labels).

1. **Cost to users.** Blocks of ``--requests`` sequential requests alternate between no experiment
   and the good candidate in shadow on every request (``shadow_share`` 1.0, no cap): the users'
   latency (what ``runtime.call`` returns to them) per block, medians per condition and their ratio,
   measured side by side. Shadow calls run on a background thread that shares the one llama.cpp
   engine, so a user's request can wait behind one.
2. **Decision.** For each candidate, a shadow experiment (``shadow_min_requests`` 40, no minimum
   time) on fresh messages, the controller checking after every 10 requests: the action
   (``advance`` to the first stage, or ``rollback``), the shadow calls it took and the agreement.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path

from ratchet.config import Settings
from ratchet.data.files import labelled_examples
from ratchet.data.sampling import balanced_demos
from ratchet.evaluation import attach_demos
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.serve import Runtime
from ratchet.store.outcomes import read_agreement

SIG = "classify_intent"


def _candidates(runtime: Runtime) -> dict[str, str]:
    spec = runtime.registry.get(SIG)
    train = labelled_examples(spec, None, split="train").examples
    demos = balanced_demos(train, 20, spec.label_field, 0)
    labels = sorted({d[spec.label_field] for d in demos})
    wrong = [d.copy(**{spec.label_field: labels[(labels.index(d[spec.label_field]) + 3) % len(labels)]})
             for d in demos]
    store = VersionStore(runtime.settings.home_dir)
    made = {}
    for name, chosen in (("good", demos), ("bad", wrong)):
        made[name] = store.save(spec, attach_demos(spec.build(), chosen), lm=runtime.lms.model_id,
                                adapter=runtime.lms.adapter_name).version
    return made


def _block(runtime: Runtime, texts: list[str]) -> list[float]:
    latencies = []
    for text in texts:
        result = runtime.call(SIG, {"text": text})
        latencies.append(result.latency_ms)
    runtime.flush(timeout=120)  # the shadow calls of this block finish before the next block starts
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=40, help="requests per latency block")
    parser.add_argument("--blocks", type=int, default=3, help="blocks per condition (alternating)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(home=Path(tmp) / "home")
        settings.telemetry.sampling_rate = 0.0
        settings.serve.routing_check_interval_s = 0.1
        settings.rollout.shadow_share = 1.0
        settings.rollout.max_shadow_calls_per_minute = 100_000
        settings.rollout.shadow_min_requests = 40
        settings.rollout.shadow_min_minutes = 0.0
        registry = load_programs(settings)
        runtime = Runtime(settings, registry=registry)
        runtime.warm_up()
        spec = registry.get(SIG)
        texts = [e.text for e in labelled_examples(spec, None, split="test").examples]
        random.Random(0).shuffle(texts)
        versions = _candidates(runtime)
        controller = RolloutController(settings, registry, db=runtime.db)

        # 1. cost to users: off / on blocks, side by side
        latency: dict[str, list[float]] = {"off": [], "on": []}
        block_medians: dict[str, list[float]] = {"off": [], "on": []}
        cursor = 0
        for block in range(args.blocks):
            for condition in ("off", "on"):
                if condition == "on":
                    controller.start(SIG, versions["good"], experiment_id=f"cost_{block}", shadow=True)
                runtime.follower.refresh()
                chunk = texts[cursor:cursor + args.requests]
                cursor += args.requests
                values = _block(runtime, chunk)
                latency[condition] += values
                block_medians[condition].append(statistics.median(values))
                if condition == "on":
                    controller.rollback(f"cost_{block}", reason="benchmark block done")
                print(f"block {block + 1} shadow {condition}: median {statistics.median(values):.0f} ms", flush=True)

        def summary(values: list[float]) -> dict[str, float]:
            ordered = sorted(values)
            return {"n": len(values), "p50_ms": round(statistics.median(ordered), 1),
                    "p95_ms": round(ordered[int(0.95 * (len(ordered) - 1))], 1)}

        cost = {c: summary(v) for c, v in latency.items()}
        cost["median_ratio_on_off"] = round(cost["on"]["p50_ms"] / cost["off"]["p50_ms"], 2)
        cost["block_medians_ms"] = {c: [round(m, 1) for m in v] for c, v in block_medians.items()}

        # 2. decisions
        decisions = {}
        for name in ("good", "bad"):
            experiment_id = f"decide_{name}"
            controller.start(SIG, versions[name], experiment_id=experiment_id, shadow=True)
            runtime.follower.refresh()
            started, served, decision = time.perf_counter(), 0, None
            while served < 200:
                _block(runtime, texts[cursor:cursor + 10])
                cursor, served = cursor + 10, served + 10
                decision = controller.check(experiment_id)
                if decision.action != "hold":
                    break
            agreement = read_agreement(runtime.db, SIG, versions[name], experiment_id)
            decisions[name] = {"action": decision.action if decision else None,
                               "reason": decision.reason if decision else None, "requests": served,
                               "shadow_calls": agreement.compared, "agreement": round(agreement.rate or 0.0, 3),
                               "seconds": round(time.perf_counter() - started, 1)}
            live = controller.store.get(experiment_id)
            if live.live:
                controller.rollback(experiment_id, reason="benchmark done")
            print(f"{name}: {decisions[name]['action']} after {served} requests "
                  f"(agreement {decisions[name]['agreement']:.0%}): {decisions[name]['reason']}", flush=True)
        runtime.close()

    result = {"machine": f"{platform.processor() or platform.machine()}, {platform.system()}",
              "when": datetime.now().isoformat(timespec="seconds"),
              "command": "python benchmarks/shadow_cost.py " + " ".join(
                  f"--{k} {v}" for k, v in (("requests", args.requests), ("blocks", args.blocks))),
              "cost": cost, "decisions": decisions}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
