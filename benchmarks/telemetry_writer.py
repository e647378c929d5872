"""Telemetry writer throughput, multi-process safety under rotation, and sampling accuracy and cost.

    python benchmarks/telemetry_writer.py [--n 50000] [--reps 5] [--procs 4] [--per-proc 10000]
                                          [--max-file-mb 0.5] [--ids 100000] [--out benchmarks/results/telemetry.json]

(a) One process submits ``--n`` realistic InteractionLog records (~500 bytes of JSON each)
    then flushes; records per second from the first submit to the end of the flush, median
    of ``--reps`` runs (the queue holds all of them: this measures the writer, not drops).
(b) ``--procs`` processes (spawn) write ``--per-proc`` records each into one directory with
    a small ``--max-file-mb``, so files rotate and are gzipped during the run; then every
    file (plain and .gz) is read back: records lost, duplicated, malformed lines.
(c) The share of ``--ids`` random request ids sampled at rate 0.10, and the cost of
    ``Sampler.should_sample`` at rate 0.10 and rate 0.
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
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from ratchet.store.jsonl import JsonlReadStats, iter_jsonl
from ratchet.telemetry import InteractionLog, Sampler, TelemetryWriter, iter_log_files

console = Console(stderr=True)

WORDS = ("card", "payment", "declined", "refund", "transfer", "pending", "google", "pay", "apple", "top", "up",
         "limit", "fee", "exchange", "rate", "atm", "cash", "withdrawal", "pin", "blocked")


def realistic_record(worker: int, i: int) -> dict[str, Any]:
    """An InteractionLog as serving writes it: ~500 bytes of JSON."""
    text = " ".join(WORDS[(i * 7 + k * 3 + worker) % len(WORDS)] for k in range(6))
    return InteractionLog(
        module_name="classify_intent", module_version="v7", signature="classify_intent",
        input={"text": f"Why was my {text}?"}, output={"intent": "card_payment_not_recognised"},
        timestamp_ms=1_760_000_000_000 + i, success=True, latency_ms=93.4 + i % 50, cost_usd=0.000021,
        model="llamacpp/gemma-3-270m-q4_k_m@sha256:a5fd3b62230aa5ec", request_id=f"{worker}-{i}",
        arm="baseline", program_fingerprint="5c1f0e9a4b7d2e31", tokens_in=318, tokens_out=9,
    ).to_dict()


# -- (a) one process ------------------------------------------------------------------------


def single_process(n: int, reps: int) -> dict[str, Any]:
    records = [realistic_record(0, i) for i in range(n)]
    size = statistics.mean(len(json.dumps(r, separators=(",", ":"))) + 1 for r in records[:1000])
    rates, submit_us = [], []
    for _ in range(reps):
        with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
            writer = TelemetryWriter(Path(tmp), queue_size=n)
            started = time.perf_counter()
            for record in records:
                writer.submit(record)
            submitted = time.perf_counter()
            assert writer.flush(timeout=120), "flush timed out"
            elapsed = time.perf_counter() - started
            writer.close()
            stats = writer.stats()
            assert stats["written"] == n, stats
            rates.append(n / elapsed)
            submit_us.append((submitted - started) / n * 1e6)
    return {"n": n, "reps": reps, "bytes_per_record": round(size), "records_per_s": round(statistics.median(rates)),
            "records_per_s_all": [round(r) for r in rates], "submit_us": round(statistics.median(submit_us), 2)}


# -- (b) several processes ------------------------------------------------------------------


def _worker(directory: str, worker: int, n: int, max_file_mb: float, start: Any, results: Any) -> None:
    records = [realistic_record(worker, i) for i in range(n)]
    writer = TelemetryWriter(Path(directory), max_file_mb=max_file_mb, queue_size=n)
    results.put(("ready", worker))
    start.wait(120)
    for record in records:
        writer.submit(record)
    writer.close()
    results.put(("stats", worker, writer.stats()))


def multi_process(procs: int, per_proc: int, max_file_mb: float) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="ratchet-bench-") as tmp:
        start, results = ctx.Event(), ctx.Queue()
        workers = [ctx.Process(target=_worker, args=(tmp, k, per_proc, max_file_mb, start, results))
                   for k in range(procs)]
        for p in workers:
            p.start()
        for _ in workers:  # the clock starts once every child has imported and built its records
            results.get(timeout=120)
        started = time.perf_counter()
        start.set()
        stats = {worker: s for _, worker, s in (results.get(timeout=300) for _ in workers)}
        elapsed = time.perf_counter() - started
        for p in workers:
            p.join(60)
        files = iter_log_files(Path(tmp))
        read = JsonlReadStats()
        seen = Counter(r.get("request_id") for path in files for r in iter_jsonl(path, read))
    expected = {f"{k}-{i}" for k in range(procs) for i in range(per_proc)}
    return {
        "procs": procs, "per_proc": per_proc, "max_file_mb": max_file_mb,
        "seconds": round(elapsed, 2), "records_per_s": round(procs * per_proc / elapsed),
        "exit_codes": [p.exitcode for p in workers],
        "files": len(files), "gz_files": sum(p.name.endswith(".gz") for p in files),
        "rotations": sum(s["rotations"] for s in stats.values()),
        "compressed": sum(s["compressed"] for s in stats.values()),
        "written": sum(s["written"] for s in stats.values()),
        "dropped": sum(s["dropped"] for s in stats.values()),
        "lost": len(expected - seen.keys()),
        "duplicated": sum(c - 1 for c in seen.values() if c > 1),
        "unexpected": len(seen.keys() - expected),
        "malformed_lines": read.bad_lines,
    }


# -- (c) sampling ---------------------------------------------------------------------------


def sampling(n_ids: int) -> dict[str, Any]:
    ids = [str(uuid.uuid4()) for _ in range(n_ids)]
    sampler = Sampler(0.10)
    share = sum(sampler.should_sample("classify_intent", rid) for rid in ids) / n_ids

    def cost_ns(s: Sampler) -> float:
        timings = []
        for _ in range(5):
            started = time.perf_counter_ns()
            for rid in ids:
                s.should_sample("classify_intent", rid)
            timings.append((time.perf_counter_ns() - started) / n_ids)
        return statistics.median(timings)

    return {"ids": n_ids, "rate": 0.10, "observed_share": round(share, 5),
            "error_points": round(abs(share - 0.10) * 100, 3),
            "should_sample_ns_rate_0_10": round(cost_ns(sampler)),
            "should_sample_ns_rate_0": round(cost_ns(Sampler(0)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000, help="records for the single-process run")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--procs", type=int, default=4)
    parser.add_argument("--per-proc", type=int, default=10_000)
    parser.add_argument("--max-file-mb", type=float, default=0.5)
    parser.add_argument("--ids", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/telemetry.json"))
    args = parser.parse_args()

    started = time.time()
    console.print("(a) one process …")
    single = single_process(args.n, args.reps)
    console.print("(b) several processes with rotation …")
    multi = multi_process(args.procs, args.per_proc, args.max_file_mb)
    console.print("(c) sampling …")
    sample = sampling(args.ids)
    result = {
        "machine": {"node": platform.node(), "machine": platform.machine(), "processor": platform.processor() or "?",
                    "cpu_count": os.cpu_count(), "python": platform.python_version(), "system": platform.platform()},
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "seconds": round(time.time() - started, 1),
        "single_process": single,
        "multi_process": multi,
        "sampling": sample,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)


def _print(result: dict[str, Any]) -> None:
    single, multi, sample = result["single_process"], result["multi_process"], result["sampling"]
    m = result["machine"]
    table = Table(title=f"telemetry · {m['node']} · {m['cpu_count']} CPUs · Python {m['python']}")
    for column in ("measure", "value", "goal", ""):
        table.add_column(column, justify="left" if column == "measure" else "right")

    def row(measure: str, value: str, goal: str = "", ok: bool | None = None) -> None:
        table.add_row(measure, value, goal, "" if ok is None else ("[green]ok[/]" if ok else "[red]missed[/]"))

    row(f"(a) records/s, 1 process (median of {single['reps']}, {single['bytes_per_record']} B each)",
        f"{single['records_per_s']:,}", "> 20,000", single["records_per_s"] > 20_000)
    row("(a) submit() per call", f"{single['submit_us']} µs")
    row(f"(b) {multi['procs']} processes × {multi['per_proc']:,} records, max_file_mb={multi['max_file_mb']}",
        f"{multi['records_per_s']:,} rec/s")
    row("(b) rotations / gzipped files", f"{multi['rotations']} / {multi['gz_files']}")
    row("(b) records lost", str(multi["lost"]), "0", multi["lost"] == 0)
    row("(b) records duplicated", str(multi["duplicated"]), "0", multi["duplicated"] == 0)
    row("(b) malformed lines", str(multi["malformed_lines"]), "0", multi["malformed_lines"] == 0)
    row(f"(c) sampled share of {sample['ids']:,} ids at 10 %", f"{sample['observed_share']:.2%}", "10 % ± 0.5",
        sample["error_points"] <= 0.5)
    row("(c) should_sample at rate 0.10", f"{sample['should_sample_ns_rate_0_10']} ns")
    row("(c) should_sample at rate 0", f"{sample['should_sample_ns_rate_0']} ns")
    Console().print(table)


if __name__ == "__main__":
    main()
