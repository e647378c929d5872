"""What Ratchet's serving path costs on top of the program itself, with an instant scripted LM.

    python benchmarks/runtime_overhead.py [--n 3000] [--processes 4] [--requests 10000]

(a) Added latency of ``Runtime.call`` over calling the same DSPy module directly
    (same LM, adapter and usage tracking), p50 and p99, at sampling 0 % and 10 %.
    Calls alternate direct/runtime so both see the same machine noise.
(b) Telemetry under several processes: ``--processes`` processes each serve
    ``--requests`` requests through ``Runtime.call`` with sampling at 100 % and a small
    rotation size, then every log file (plain and gzipped) is read back: records lost,
    duplicated and malformed.
Results go to benchmarks/results/runtime.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import dspy
from rich.console import Console
from rich.table import Table

from ratchet.config import Settings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.serve import Runtime
from ratchet.serve.request_ids import RequestIds
from ratchet.store.jsonl import JsonlReadStats, iter_jsonl
from ratchet.telemetry.writer import iter_log_files

INPUTS = {"text": "I still have not received my new card, it has been two weeks. Where is it?"}


def scripted_bundle() -> LMBundle:
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    lm = dspy.LM("scripted/bench", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)
    return LMBundle.for_lm(lm, CompletionAdapter())


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def overhead(home: Path, sampling: float, n: int) -> dict:
    settings = Settings(home=home)
    settings.telemetry.sampling_rate = sampling
    bundle = scripted_bundle()
    with Runtime(settings, lms=bundle) as runtime:
        module = runtime.registry.get("classify_intent").build()
        direct_us, runtime_us = [], []
        for i in range(n + 200):
            started = time.perf_counter()
            with dspy.context(lm=bundle.task, adapter=bundle.adapter, track_usage=True):
                module(**INPUTS)
            middle = time.perf_counter()
            result = runtime.call("classify_intent", INPUTS, request_id=f"bench-{sampling}-{i}")
            ended = time.perf_counter()
            assert result.success, result.error
            if i >= 200:  # warm-up done
                direct_us.append((middle - started) * 1e6)
                runtime_us.append((ended - middle) * 1e6)
        sampled = runtime.telemetry.stats()["submitted"]
    return {
        "sampling": sampling,
        "calls": n,
        "direct_p50_us": round(quantile(direct_us, 0.50), 1),
        "direct_p99_us": round(quantile(direct_us, 0.99), 1),
        "runtime_p50_us": round(quantile(runtime_us, 0.50), 1),
        "runtime_p99_us": round(quantile(runtime_us, 0.99), 1),
        "added_p50_us": round(quantile(runtime_us, 0.50) - quantile(direct_us, 0.50), 1),
        "added_p99_us": round(quantile(runtime_us, 0.99) - quantile(direct_us, 0.99), 1),
        "added_mean_us": round(statistics.fmean(runtime_us) - statistics.fmean(direct_us), 1),
        "telemetry_records": sampled,
    }


def serve_requests(home: str, worker: int, requests: int) -> None:
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    settings = Settings(home=Path(home))
    settings.telemetry.sampling_rate = 1.0
    settings.telemetry.max_file_mb = 1.0
    with Runtime(settings, lms=scripted_bundle()) as runtime:
        for i in range(requests):
            runtime.call("classify_intent", INPUTS, request_id=f"w{worker}-{i}")


def multiprocess_telemetry(home: Path, processes: int, requests: int) -> dict:
    ctx = multiprocessing.get_context("spawn")
    started = time.perf_counter()
    procs = [ctx.Process(target=serve_requests, args=(str(home), w, requests)) for w in range(processes)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    elapsed = time.perf_counter() - started
    seen: dict[str, int] = {}
    stats = JsonlReadStats()
    files = iter_log_files(home / "telemetry")
    for path in files:
        for record in iter_jsonl(path, stats):
            rid = record.get("request_id")
            seen[rid] = seen.get(rid, 0) + 1
    ids = RequestIds.for_settings(Settings(home=home))  # the ids the workers were issued for their idempotency keys
    expected = {ids.issue(idempotency_key=f"w{w}-{i}", caller="library", signature="classify_intent")
                for w in range(processes) for i in range(requests)}
    return {
        "processes": processes,
        "requests_per_process": requests,
        "seconds": round(elapsed, 1),
        "files": len(files),
        "gzipped_files": sum(1 for f in files if f.suffix == ".gz"),
        "records_lost": len(expected - seen.keys()),
        "records_duplicated": sum(1 for rid, count in seen.items() if count > 1),
        "malformed_lines": stats.bad_lines,
        "exit_codes": [p.exitcode for p in procs],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/runtime.json"))
    args = parser.parse_args()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [overhead(Path(tmp) / f"home-{rate}", rate, args.n) for rate in (0.0, 0.10)]
        telemetry = multiprocess_telemetry(Path(tmp) / "multi", args.processes, args.requests)
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "overhead": rows,
        "multiprocess_telemetry": telemetry,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console = Console()
    table = Table(title="Runtime.call vs the bare module (instant scripted LM), µs")
    for column in ("sampling", "direct p50", "runtime p50", "added p50", "direct p99", "runtime p99", "added p99"):
        table.add_column(column, justify="right")
    for r in rows:
        table.add_row(f"{r['sampling']:.0%}", str(r["direct_p50_us"]), str(r["runtime_p50_us"]),
                      f"[bold]{r['added_p50_us']}[/]", str(r["direct_p99_us"]), str(r["runtime_p99_us"]),
                      f"[bold]{r['added_p99_us']}[/]")
    console.print(table)
    t = telemetry
    console.print(f"{t['processes']} processes × {t['requests_per_process']} requests at 100 % sampling: "
                  f"{t['files']} files ({t['gzipped_files']} gzipped), lost {t['records_lost']}, "
                  f"duplicated {t['records_duplicated']}, malformed {t['malformed_lines']} ({t['seconds']} s)")


if __name__ == "__main__":
    main()
