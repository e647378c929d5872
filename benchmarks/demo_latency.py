"""Per-request latency of a program with more demos: 40 vs 96 balanced demos on the embedded model, interleaved.

    python benchmarks/demo_latency.py [--program classify_intent] [--sizes 40,96] [--requests 15]

Each version is warmed once (its prompt prefix computed and cached), then the requests alternate between the
versions (same texts, each held-out); reported: median and p90 seconds per request. Writes
benchmarks/results/demo_latency.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import dspy
from rich.console import Console

from ratchet.config import Settings
from ratchet.data.files import load_examples
from ratchet.data.sampling import seeded_sample
from ratchet.evaluation import fewshot_program
from ratchet.lm import build_lms
from ratchet.programs import load_programs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--program", default="classify_intent")
    parser.add_argument("--sizes", default="40,96")
    parser.add_argument("--requests", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/demo_latency.json"))
    args = parser.parse_args()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    console = Console(stderr=True)
    settings = Settings()
    spec = load_programs(settings).get(args.program)
    bundle = build_lms(settings.lm)
    bundle.warm_up()
    test = seeded_sample(load_examples(spec.data["test"], spec.schema).examples, args.requests + 1, 1)
    sizes = [int(s) for s in args.sizes.split(",")]
    programs = {k: fewshot_program(spec, k) for k in sizes}
    seconds: dict[int, list[float]] = {k: [] for k in sizes}
    with dspy.context(lm=bundle.task, adapter=bundle.adapter):
        for program in programs.values():  # warm: the prompt prefix (and the calibration prompt) computed once
            program(**test[0].inputs())
        for example in test[1:]:
            for k, program in programs.items():
                started = time.perf_counter()
                program(**example.inputs())
                seconds[k].append(time.perf_counter() - started)
    result = {"machine": f"{platform.node()} · {os.cpu_count()} CPUs · Python {platform.python_version()}",
              "n_threads": os.environ.get("RATCHET_LM__LOCAL__N_THREADS", "0 (all cores)"),
              "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]), "program": args.program,
              "demos": {str(k): {"median_s": round(statistics.median(v), 3),
                                 "p90_s": round(sorted(v)[int(0.9 * (len(v) - 1))], 3), "n": len(v)}
                        for k, v in seconds.items()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(result)


if __name__ == "__main__":
    main()
