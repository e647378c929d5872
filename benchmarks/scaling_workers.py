"""Why ``ratchet serve --workers 2`` serves less than one worker on this 2-core machine: a follow-up to
benchmarks/scaling.py with the fast stub LM.

    .venv/bin/python benchmarks/scaling_workers.py [--rounds 2] [--requests 1500]

Four variants, measured in turn (interleaved, medians of ``--rounds``), the same load as scaling.py
(concurrency 4 per process, default 10 % sampling, rate limit off):
``w1-sqlite`` (one worker, SQLite: scaling.py's ``workers-1``); ``w1-sqlite-mpmetrics`` (the same with
``PROMETHEUS_MULTIPROC_DIR`` set, so prometheus_client keeps every sample in per-process mmap files as it
does under ``--workers N``); ``w2-sqlite`` (``--workers 2``, one SQLite home); ``w2-postgres`` (``--workers 2``,
the home's state database on PostgreSQL). Also recorded: how many requests each process served (its
``request_index`` inserts, from scaling.py's statement trace) — how the kernel spread the load generator's
connections over the workers. Results go to benchmarks/results/scaling_workers.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parent))

from bench_info import run_info  # noqa: E402
from scaling import BASE, PG, STUB_LM, Server, _load, _pg, bench_env, start_stub  # noqa: E402

RESULTS = HERE.parent / "results" / "scaling_workers.json"


class One:
    """One ``ratchet serve`` under test (what scaling.py's ``_load`` needs: servers and n)."""

    def __init__(self, name: str, server: Server, n: int, database: str | None = None) -> None:
        self.name, self.servers, self.n, self.database = name, [server], n, database


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    from ratchet.config import Settings
    from ratchet.data.files import load_examples
    from ratchet.programs import load_programs
    from ratchet.serve.loadtest import run_http

    spec = load_programs(Settings()).get("classify_intent")
    examples = load_examples(spec.data["test"], spec.schema).examples
    console = Console(stderr=True)
    with tempfile.TemporaryDirectory(prefix="ratchet-scaling-w-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        stub, stub_port = start_stub()
        lm = STUB_LM.format(api_base=f"http://127.0.0.1:{stub_port}/v1")
        sqlite = BASE.format(database="", lm=lm, sink='sink = "files"')
        database = f"bench_scale_{secrets.token_hex(4)}"
        _pg(f'CREATE DATABASE "{database}"')
        url = f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/{database}"
        postgres = BASE.format(database=f'database_url = "{url}"', lm=lm, sink='sink = "database"')
        (root / "mp").mkdir()
        variants = [One("w1-sqlite", Server(root, "w1-sqlite", sqlite, env, 1), 1),
                    One("w1-sqlite-mpmetrics", Server(root, "w1-mp", sqlite, {**env, "PROMETHEUS_MULTIPROC_DIR":
                                                                             str(root / "mp")}, 1), 1),
                    One("w2-sqlite", Server(root, "w2-sqlite", sqlite, env, 2), 2),
                    One("w2-postgres", Server(root, "w2-postgres", postgres, env, 2), 2)]
        rounds: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
        spread: dict[str, list[int]] = {}
        try:
            for v in variants:
                v.servers[0].start()
                v.servers[0].wait_ready(timeout_s=300)
                run_http(v.servers[0].url, spec, examples, queries=16 * v.n, concurrency=4)
            for r in range(args.rounds):
                for v in (variants if r % 2 == 0 else variants[::-1]):
                    figures = _load(v, spec, examples, args.requests)
                    rounds[v.name].append(figures)
                    console.print(f"[dim]round {r + 1} {v.name}: {figures}[/]", highlight=False)
            for v in variants:  # how the kernel spread the connections: requests indexed by each process
                per_pid = [json.loads(f.read_text())["rows_by_table"].get("request_index", 0)
                           for f in sorted(v.servers[0].trace.glob("*.json"))]
                spread[v.name] = sorted((n for n in per_pid if n), reverse=True)
        finally:
            for v in variants:
                v.servers[0].stop()
            os.killpg(stub.pid, signal.SIGTERM)
            stub.wait(timeout=10)
            sizes = _pg("SELECT relname, n_live_tup, pg_total_relation_size(relid) FROM pg_stat_user_tables "
                        "WHERE n_live_tup > 0 ORDER BY 3 DESC", dbname=database)
            _pg(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    result: dict[str, Any] = {**run_info(), "results": {},
                              "postgres_tables_after": {name: {"rows": rows, "bytes": size, "bytes_per_row":
                                                               round(size / rows)} for name, rows, size in sizes}}
    table = Table(title=f"ratchet serve --workers on {os.cpu_count()} CPUs, fast stub LM")
    for column in ("variant", "req/s", "p50 ms", "p95 ms", "errors", "requests per process"):
        table.add_column(column, justify="right")
    for name, runs in rounds.items():
        f = {"throughput_rps": round(statistics.median(x["throughput_rps"] for x in runs), 2),
             "p50_ms": round(statistics.median(x["p50_ms"] for x in runs), 2),
             "p95_ms": round(statistics.median(x["p95_ms"] for x in runs), 2),
             "errors": sum(x["errors"] for x in runs), "requests_per_process": spread.get(name),
             "rounds": runs}
        result["results"][name] = f
        table.add_row(name, str(f["throughput_rps"]), str(f["p50_ms"]), str(f["p95_ms"]), str(f["errors"]),
                      " / ".join(map(str, f["requests_per_process"] or [])))
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console().print(table)


if __name__ == "__main__":
    main()
