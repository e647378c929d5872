"""A zero-shot baseline and a few-shot candidate called in turns, as shadow mode and an A/B split serve them.

    RATCHET_LM__LOCAL__N_THREADS=2 python benchmarks/shadow_turns.py [--requests 30] [--demos 96]
        [--cache-slots 1,2] [--out benchmarks/results/shadow_turns.json]

``classify_intent`` zero-shot (the quickstart's first version) and with ``--demos`` balanced, shuffled demos (the
kind of candidate ``auto`` produces) answer the same held-out inputs in turns — baseline, candidate, baseline, … —
on the embedded engine, once per ``--cache-slots`` value, each in its own child process (its RSS is its own).
The first 4 inputs warm up and are not counted. Reported per configuration: each arm's median seconds a call,
the median seconds a request (both arms), peak RSS and the engine's cache counters.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import resource
import statistics
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench_info import run_info

WARM_UP = 4


def _run(cache_slots: int, requests: int, demos: int, queue: Any) -> None:
    os.environ["RATCHET_LM__LOCAL__CACHE_SLOTS"] = str(cache_slots)
    import dspy

    from ratchet.config import Settings
    from ratchet.data import balanced_demos, load_examples, seeded_sample
    from ratchet.evaluation import attach_demos
    from ratchet.lm import build_lms
    from ratchet.programs import load_programs

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    settings = Settings()
    spec = load_programs(settings).get("classify_intent")
    bundle = build_lms(settings.lm)
    bundle.warm_up()
    train = load_examples(spec.data["train"], spec.schema).examples
    inputs = seeded_sample(load_examples(spec.data["test"], spec.schema).examples, requests + WARM_UP, 1)
    shots = balanced_demos(train, demos, next(iter(spec.signature.output_fields)), seed=0)
    random.Random(3).shuffle(shots)
    arms = {"baseline": spec.build(), "candidate": attach_demos(spec.build(), shots)}
    seconds: dict[str, list[float]] = {arm: [] for arm in arms}
    with dspy.context(lm=bundle.task, adapter=bundle.adapter):
        for i, example in enumerate(inputs):
            for arm, program in arms.items():
                started = time.perf_counter()
                program(**example.inputs())
                if i >= WARM_UP:
                    seconds[arm].append(time.perf_counter() - started)
    engine = bundle.engine
    queue.put({"cache_slots": cache_slots,
               **{f"{arm}_median_s": round(statistics.median(v), 4) for arm, v in seconds.items()},
               "request_median_s": round(statistics.median(map(sum, zip(*seconds.values(), strict=True))), 4),
               "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
               "cache": dict(engine.cache_stats), "snapshots": engine._prompts.stats() if engine._prompts else None})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--demos", type=int, default=96)
    parser.add_argument("--cache-slots", default="1,2")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/shadow_turns.json"))
    args = parser.parse_args()
    context = mp.get_context("spawn")
    rows = []
    for slots in (int(s) for s in args.cache_slots.split(",")):
        queue = context.Queue()
        child = context.Process(target=_run, args=(slots, args.requests, args.demos, queue))
        child.start()
        rows.append(queue.get())
        child.join()
    result = {**run_info(), "threads": os.environ.get("RATCHET_LM__LOCAL__N_THREADS"), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"zero-shot baseline and {args.demos}-demo candidate in turns, {args.requests} requests")
    for column in ("cache_slots", "baseline s", "candidate s", "request s", "RSS MiB"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(str(row["cache_slots"]), f"{row['baseline_median_s']:.3f}", f"{row['candidate_median_s']:.3f}",
                      f"{row['request_median_s']:.3f}", str(row["rss_mib"]))
    Console().print(table)


if __name__ == "__main__":
    main()
