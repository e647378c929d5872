"""What per-arm outcome counting costs: ``record()`` on the caller's thread, and flush throughput.

    python benchmarks/outcome_recorder.py [--calls 100000] [--flush-records 50000]
                                          [--postgres-url postgresql://postgres@127.0.0.1:5432/test]
                                          [--no-postgres] [--out benchmarks/results/outcomes.json]

``record()`` is timed call by call (``perf_counter_ns`` around each call; the timer's own
cost is reported separately) with a realistic mix: 2 signatures × 2 arms, lognormal
latencies, 5 % errors, the clock read inside. Flush throughput: ``--flush-records``
requests spread over 60 minutes (each also indexed by request id) are flushed in one
transaction to a new SQLite file and to a fresh PostgreSQL schema ("insert": mostly new
rows), then the same number of requests on the same keys ("update": every row an
``ON CONFLICT DO UPDATE`` increment). Rows = rows of all four tables written.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import sqlalchemy
from rich.console import Console
from rich.table import Table
from sqlalchemy.engine import make_url

from ratchet.store.db import StateDB
from ratchet.store.outcomes import OutcomeRecorder, read_arm_stats

console = Console(stderr=True)
SIGNATURES = ("classify_intent", "extract_booking")
ARMS = (("v20240101_000000", "baseline"), ("v20240201_000000", "candidate"))
T0 = 1_700_000_040.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=100_000, help="record() calls timed")
    parser.add_argument("--flush-records", type=int, default=50_000, help="requests per flush")
    parser.add_argument("--postgres-url", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/outcomes.json"))
    args = parser.parse_args()

    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        record = _time_record(StateDB(f"sqlite:///{tmp}/record.db"), args.calls)
        flushes = _time_flush(StateDB(f"sqlite:///{tmp}/flush.db"), "sqlite", args.flush_records)
    server = None
    if not args.no_postgres:
        try:
            with _postgres_schema(args.postgres_url) as (url, server):
                flushes += _time_flush(StateDB(url), "postgresql", args.flush_records)
        except psycopg.OperationalError as exc:
            console.print(f"[yellow]PostgreSQL skipped: {exc}[/yellow]")

    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {platform.processor() or '?'} · "
                   f"{os.cpu_count() or 1} CPUs · Python {platform.python_version()}",
        "versions": {"sqlalchemy": sqlalchemy.__version__, "psycopg": psycopg.__version__,
                     "sqlite": sqlite3.sqlite_version, "postgresql": server},
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "seconds": round(time.time() - started, 1),
        "record": record,
        "flush": flushes,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)


def _workload(n: int, seed: int, spread_s: float | None) -> Iterator[tuple[str, str, str, dict]]:
    rng = random.Random(seed)
    for i in range(n):
        version, arm = ARMS[i % 2]
        failed = rng.random() < 0.05
        yield SIGNATURES[(i // 2) % 2], version, arm, {
            "latency_s": rng.lognormvariate(math.log(0.25), 0.8),
            "success": not failed,
            "error_type": rng.choice(("Timeout", "OutputParseError", "RateLimitError")) if failed else None,
            "tokens_in": rng.randint(100, 600),
            "tokens_out": rng.randint(5, 60),
            "cost_usd": 1e-5 * rng.random(),
            "at": None if spread_s is None else T0 + rng.random() * spread_s,
        }


def _time_record(db: StateDB, calls: int) -> dict:
    """Nanoseconds per record() call on the caller's thread (no flush runs meanwhile)."""
    recorder = OutcomeRecorder(db, flush_interval_s=3600, max_pending_keys=10**9)
    work = list(_workload(calls, seed=1, spread_s=None))
    for signature, version, arm, kwargs in work[:1000]:  # warm up
        recorder.record(signature, version, arm, **kwargs)
    clock = time.perf_counter_ns
    overhead = statistics.median(_timer_gap(clock) for _ in range(10_000))
    samples = []
    total_started = clock()
    for signature, version, arm, kwargs in work:
        started = clock()
        recorder.record(signature, version, arm, **kwargs)
        samples.append(clock() - started)
    total = clock() - total_started
    recorder.close()
    db.dispose()
    samples.sort()
    return {
        "calls": calls,
        "median_ns": samples[len(samples) // 2],
        "p99_ns": samples[int(len(samples) * 0.99)],
        "max_ns": samples[-1],
        "timer_overhead_ns": overhead,
        "calls_per_s": round(calls / (total / 1e9)),
    }


def _timer_gap(clock) -> int:
    started = clock()
    return clock() - started


def _time_flush(db: StateDB, backend: str, n: int) -> list[dict]:
    db.ensure_migrated()
    recorder = OutcomeRecorder(db, flush_interval_s=3600, max_pending_keys=10**9, max_pending_requests=10**9)
    rows = []
    for phase, seed, index in (("insert", 2, True), ("update", 3, False)):
        for i, (signature, version, arm, kwargs) in enumerate(_workload(n, seed=seed, spread_s=3600)):
            recorder.record(signature, version, arm, **kwargs)
            if index:
                recorder.index_request(f"req-{seed}-{i}", signature, version, arm)
        before = recorder.stats().flushed_rows
        started = time.perf_counter()
        if not recorder.flush():
            raise RuntimeError(f"{backend} flush failed: {recorder.stats().last_error}")
        seconds = time.perf_counter() - started
        written = recorder.stats().flushed_rows - before
        rows.append({"backend": backend, "phase": phase, "requests": n, "rows": written,
                     "seconds": round(seconds, 3), "rows_per_s": round(written / seconds),
                     "requests_per_s": round(n / seconds)})
    recorder.close()
    counted = sum(s.requests for sig in SIGNATURES for s in read_arm_stats(db, sig).values())
    assert counted == 2 * n, (counted, 2 * n)
    db.dispose()
    return rows


@contextmanager
def _postgres_schema(url: str) -> Iterator[tuple[str, str]]:
    """A throw-away schema on the server: (URL with that search_path, server version)."""
    parsed = make_url(url)
    params = {"host": parsed.host, "port": parsed.port or 5432, "dbname": parsed.database, "user": parsed.username,
              "password": parsed.password, "connect_timeout": 5}
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(**params, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
        server = conn.execute("SHOW server_version").fetchone()[0]
    try:
        yield parsed.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(False), server
    finally:
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _print(result: dict) -> None:
    r = result["record"]
    table = Table(title=f"record() on the caller's thread · {r['calls']:,} calls")
    for column in ("median", "p99", "max", "timer overhead", "calls/s (1 thread)"):
        table.add_column(column, justify="right")
    table.add_row(f"{r['median_ns']:,} ns", f"{r['p99_ns']:,} ns", f"{r['max_ns']:,} ns",
                  f"{r['timer_overhead_ns']:,} ns", f"{r['calls_per_s']:,}")
    Console().print(table)
    table = Table(title="flush: one transaction of UPSERT increments (all four tables)")
    for column in ("backend", "phase", "requests", "rows", "seconds", "rows/s", "requests/s"):
        table.add_column(column, justify="left" if column in ("backend", "phase") else "right")
    for f in result["flush"]:
        table.add_row(f["backend"], f["phase"], f"{f['requests']:,}", f"{f['rows']:,}", f"{f['seconds']:.3f}",
                      f"{f['rows_per_s']:,}", f"{f['requests_per_s']:,}")
    Console().print(table)
    Console().print(f"[dim]{result['machine']}[/dim]")


if __name__ == "__main__":
    main()
