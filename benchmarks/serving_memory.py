"""Memory of a serving process over 20,000 distinct requests, DSPy's response cache off vs on.

    python benchmarks/serving_memory.py [--requests 20000] [--warmup 2000] [--reps 2]

Each run is a fresh child process serving distinct questions through ``Runtime.acall``
(routing, per-arm counters in SQLite, sampled telemetry, an instrumented ChainOfThought,
a ``dspy.LM`` with ``cache=True`` and a scripted engine answering ~450 tokens): the child of
``tests/unit/test_serving_memory.py``, so the benchmark measures exactly what the test
asserts. RSS (``VmRSS``) is read after the warm-up and at the end. Settings compared, with
repetitions interleaved so they share the machine's noise:

- ``off``: ``[serve] lm_cache = "off"`` (the default);
- ``memory, 1000``: ``lm_cache = "memory"`` with the default ``lm_cache_entries``;
- ``memory, 100000``: the largest bound, more entries than requests, i.e. what an
  unbounded cache does over this run.

Results go to benchmarks/results/serving_memory.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

CHILD = Path(__file__).resolve().parents[1] / "tests" / "unit" / "test_serving_memory.py"
CONFIGS = [("off", 1000), ("memory", 1000), ("memory", 100_000)]
GOAL_MB = 50.0


def run_child(home: Path, lm_cache: str, entries: int, requests: int, warmup: int) -> dict:
    """One fresh serving process; its figures plus the bytes it left under ``<home>/cache``."""
    done = subprocess.run([sys.executable, str(CHILD), "--home", str(home), "--lm-cache", lm_cache,
                           "--entries", str(entries), "--requests", str(requests), "--warmup", str(warmup)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"child failed ({lm_cache}, {entries}):\n{done.stderr[-3000:]}")
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    cache_dir = home / "cache"
    figures["cache_dir_bytes"] = sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file()) \
        if cache_dir.exists() else 0
    return figures


def summary(runs: list[dict]) -> dict:
    """Medians over the repetitions of one configuration."""
    first = runs[0]
    return {"lm_cache": first["lm_cache"], "entries": first["entries"], "reps": len(runs),
            **{key: round(statistics.median(r[key] for r in runs), 1)
               for key in ("warm_mb", "end_mb", "growth_mb", "us_per_request", "seconds")},
            "growth_mb_each": [r["growth_mb"] for r in runs], "cache_entries": first["cache_entries"],
            "engine_calls": first["engine_calls"], "failures": sum(r["failures"] for r in runs),
            "cache_dir_bytes": max(r["cache_dir_bytes"] for r in runs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--warmup", type=int, default=2_000)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serving_memory.json"))
    args = parser.parse_args()
    started = time.time()
    runs: dict[tuple[str, int], list[dict]] = {config: [] for config in CONFIGS}
    with tempfile.TemporaryDirectory() as tmp:
        for rep in range(args.reps):
            for lm_cache, entries in CONFIGS:
                home = Path(tmp) / f"{lm_cache}-{entries}-{rep}" / "home"
                runs[(lm_cache, entries)].append(run_child(home, lm_cache, entries, args.requests, args.warmup))
    rows = [summary(r) for r in runs.values()]
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "requests": args.requests,
        "warmup": args.warmup,
        "goal_growth_mb": GOAL_MB,
        "seconds": round(time.time() - started, 1),
        "configs": rows,
        "runs": [run for config_runs in runs.values() for run in config_runs],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console = Console()
    table = Table(title=f"Serving RSS over {args.requests:,} distinct requests (MiB, median of {args.reps})")
    for column in ("lm_cache", "entries", f"at {args.warmup:,}", f"at {args.requests:,}", "growth", "cached",
                   "disk", "µs/req"):
        table.add_column(column, justify="right")
    for r in rows:
        style = "green" if r["growth_mb"] < GOAL_MB else "red"
        table.add_row(r["lm_cache"], f"{r['entries']:,}", str(r["warm_mb"]), str(r["end_mb"]),
                      f"[{style}]{r['growth_mb']}[/]", f"{r['cache_entries']:,}", f"{r['cache_dir_bytes']:,} B",
                      str(r["us_per_request"]))
    console.print(table)
    console.print(f"[dim]{result['machine']} · {result['seconds']} s · goal: growth < {GOAL_MB:g} MB[/dim]")


if __name__ == "__main__":
    main()
