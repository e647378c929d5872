"""What the embedded model's self-test costs: once per machine and build, then a lookup per start.

    python benchmarks/model_selftest.py [--runs 5] [--lookups 20] [--out benchmarks/results/model_selftest.json]

Runs the real self-test (child process: import llama.cpp, load Gemma 3 270M, complete 8 tokens)
`--runs` times without the cache, then times `--lookups` remembered results (what every later
process start pays: hashing the library's file list, reading /proc/cpuinfo, one JSON file).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ratchet.lm import bundled_weights
from ratchet.lm.llamacpp_native import cpu_info
from ratchet.lm.selftest import run_self_test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--lookups", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/model_selftest.json"))
    args = parser.parse_args()
    weights = bundled_weights()
    with tempfile.TemporaryDirectory() as cache:
        fresh = []
        for _ in range(args.runs):
            started = time.perf_counter()
            result = run_self_test(weights.path, weights_sha256=weights.sha256, use_cache=False,
                                   cache_dir=Path(cache))
            fresh.append({"wall_s": time.perf_counter() - started, "load_s": result.load_s,
                          "complete_s": result.complete_s})
        run_self_test(weights.path, weights_sha256=weights.sha256, cache_dir=Path(cache))
        lookups = []
        for _ in range(args.lookups):
            started = time.perf_counter()
            assert run_self_test(weights.path, weights_sha256=weights.sha256, cache_dir=Path(cache)).cached
            lookups.append((time.perf_counter() - started) * 1000)
    summary = {"fresh_wall_s": statistics.median(r["wall_s"] for r in fresh),
               "fresh_load_s": statistics.median(r["load_s"] for r in fresh),
               "fresh_complete_s": statistics.median(r["complete_s"] for r in fresh),
               "remembered_ms": statistics.median(lookups)}
    print(json.dumps(summary, indent=2))
    result = {"command": "python benchmarks/model_selftest.py " + " ".join(sys.argv[1:]),
              "machine": f"{platform.node()} · {cpu_info().summary()} · {os.cpu_count()} CPUs · "
                         f"Python {platform.python_version()}",
              "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "median": summary, "fresh": fresh,
              "lookups_ms": lookups}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
