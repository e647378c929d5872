"""Throughput and latency of real ``ratchet serve`` processes with 1, 2, 4 workers and 1, 2, 4 hosts, and the state
database's write load per 1,000 requests on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/scaling.py [--rounds 3] [--embedded-requests 48] [--fast-requests 800] [--json]

Two models: (a) the embedded one (llama.cpp + Gemma, ``model = "local"``), (b) ``fast``: the OpenAI-compatible
stub of tests/integration/test_multi_host.py (``openai/stub``, instant answers, in its own process), which leaves
Ratchet's own cost per request (HTTP, routing, the program, LiteLLM's client, counters, telemetry).

Topologies: ``workers-N``: one ``ratchet serve --workers N`` on one home with the default SQLite state database
(telemetry to files); ``hosts-N``: N ``ratchet serve`` processes (one worker each) with separate homes on loopback
and one PostgreSQL database of their own on 127.0.0.1:5432 (telemetry to the shared ``database`` sink), started
with the ``Host`` helper of the multi-host test. Sampling is the default 10 %; the per-client rate limit is off
(the load generator is one client).

Per model, all six topologies are started (one after another) and kept up together, then measured in turn,
``--rounds`` times in an interleaved order (a 2-core shared machine drifts: each round sees the same drift), with
:func:`ratchet.serve.loadtest.run_http` (concurrency 4 per serving process; with several hosts one generator per
host, all at once, their latencies pooled). Reported: medians over rounds of throughput and p50/p95 latency, and
each one's ratio to ``workers-1``.

Write load: every serving process loads a ``sitecustomize`` from a temporary directory that counts, through
SQLAlchemy's engine events, the statements it sends (by verb), the rows its INSERT/UPDATE/DELETE statements touch
(rowcount, or the number of parameter sets) and the transactions that wrote; the counters' deltas over the
measured loads, less the idle background measured over an idle window, give the load per 1,000 requests. On
PostgreSQL the database's own ``pg_stat_database`` deltas (xact_commit, tup_inserted + tup_updated +
tup_deleted) are recorded beside it; they also count read-only transactions and the background.
Results go to benchmarks/results/scaling.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

HERE = Path(__file__).resolve()
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(REPO / "tests"))

from tests.integration.test_multi_host import PG, Host  # noqa: E402

from bench_info import run_info  # noqa: E402
from fake_openai import chat_handler  # noqa: E402

RESULTS = HERE.parent / "results" / "scaling.json"
TOPOLOGIES = [("workers", 1), ("workers", 2), ("workers", 4), ("hosts", 1), ("hosts", 2), ("hosts", 4)]
CONCURRENCY_PER_PROCESS = 4
IDLE_S = 10.0

BASE = """home = "state"
{database}
[lm]
{lm}
[telemetry]
{sink}
[limits]
requests_per_minute = 0
"""
STUB_LM = 'model = "openai/stub"\napi_base = "{api_base}"\napi_key_env = "STUB_LM_KEY"\ncache = false\nnum_retries = 0'
EMBEDDED_LM = 'model = "local"'

# Loaded by every serving process (PYTHONPATH): counts what its engines write, dumped to <dir>/<pid>.json.
TRACE = '''
import atexit, json, os, threading, time
_dir = os.environ.get("RATCHET_BENCH_TRACE")
if _dir:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    _c = {"statements": {}, "rows_by_table": {}, "rows_written": 0, "write_transactions": 0, "transactions": 0}
    _lock = threading.Lock()

    @event.listens_for(Engine, "after_cursor_execute")
    def _after(conn, cursor, statement, parameters, context, executemany):
        verb = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
        with _lock:
            _c["statements"][verb] = _c["statements"].get(verb, 0) + 1
            if verb in ("INSERT", "UPDATE", "DELETE"):
                rows = cursor.rowcount
                if rows is None or rows < 0:
                    rows = len(parameters) if executemany else 1
                _c["rows_written"] += rows
                words = statement.split()
                table = words[2] if verb in ("INSERT", "DELETE") and len(words) > 2 else words[1]
                _c["rows_by_table"][table.strip('"')] = _c["rows_by_table"].get(table.strip('"'), 0) + rows
                conn.info["bench_wrote"] = True

    @event.listens_for(Engine, "commit")
    def _commit(conn):
        with _lock:
            _c["transactions"] += 1
            if conn.info.pop("bench_wrote", False):
                _c["write_transactions"] += 1

    def _dump():
        path = os.path.join(_dir, f"{os.getpid()}.json")
        with _lock:
            text = json.dumps(_c)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.replace(path + ".tmp", path)

    def _loop():
        while True:
            time.sleep(0.25)
            _dump()

    threading.Thread(target=_loop, daemon=True).start()
    atexit.register(_dump)
'''


def _stub_server(port: int) -> None:
    """Child process: the multi-host test's OpenAI-compatible stub on ``port``."""
    from http.server import ThreadingHTTPServer

    ThreadingHTTPServer(("127.0.0.1", port), chat_handler()).serve_forever()


def bench_env(root: Path) -> dict[str, str]:
    """The serving processes' environment: the statement trace on ``PYTHONPATH``, a shared secret, the stub's key."""
    (root / "site").mkdir()
    (root / "site" / "sitecustomize.py").write_text(TRACE)
    env = {**os.environ, "RATCHET_SECRET_KEY": secrets.token_urlsafe(48), "STUB_LM_KEY": "stub",
           "PYTHONPATH": str(root / "site"), "PYTHONUNBUFFERED": "1"}
    env.pop("RATCHET_HOME", None)
    env.pop("RATCHET_CONFIG", None)
    return env


def start_stub() -> tuple[subprocess.Popen[bytes], int]:
    """The stub LM in a child process (its own core time, not the load generator's): the process and its port."""
    from tests.integration.test_multi_host import _free_port

    port = _free_port()
    return subprocess.Popen([sys.executable, str(HERE), "--stub", str(port)], start_new_session=True), port


def _pg(sql: str, dbname: str = "test") -> list[tuple[Any, ...]]:
    with psycopg.connect(host=PG[0], port=PG[1], dbname=dbname, user="postgres", autocommit=True) as conn:
        cur = conn.execute(sql)
        return cur.fetchall() if cur.description else []


def _pg_stat(name: str) -> dict[str, int]:
    row = _pg("SELECT xact_commit, tup_inserted, tup_updated, tup_deleted FROM pg_stat_database "
              f"WHERE datname = '{name}'")[0]
    return dict(zip(("xact_commit", "tup_inserted", "tup_updated", "tup_deleted"), map(int, row), strict=True))


class Server(Host):
    """A ``ratchet serve`` process (``--workers N``) of the multi-host test's ``Host``, with its own config."""

    def __init__(self, root: Path, name: str, config: str, env: dict[str, str], workers: int) -> None:
        super().__init__(root, name, "", "", env)
        self.config.write_text(config)
        self.workers = workers
        self.trace = self.dir / "trace"
        self.trace.mkdir()
        self.env = {**env, "RATCHET_BENCH_TRACE": str(self.trace)}

    def start(self) -> None:
        log = (self.dir / "serve.log").open("wb")
        self.proc = subprocess.Popen(self.argv("serve", "--port", str(self.port), "--workers", str(self.workers),
                                               "--log-level", "warning"),
                                     cwd=self.dir, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def counters(self) -> dict[str, Any]:
        total: dict[str, Any] = {"statements": {}, "rows_written": 0, "write_transactions": 0, "transactions": 0}
        for path in self.trace.glob("*.json"):
            with contextlib.suppress(ValueError, OSError):
                one = json.loads(path.read_text())
                for key in ("rows_written", "write_transactions", "transactions"):
                    total[key] += one[key]
                total = _sum(total, {k: v for k, v in one.items() if isinstance(v, dict)})
        return total


class Topology:
    def __init__(self, kind: str, n: int, root: Path, env: dict[str, str], lm: str) -> None:
        self.kind, self.n, self.name = kind, n, f"{kind}-{n}"
        self.database: str | None = None
        if kind == "workers":
            config = BASE.format(database="", lm=lm, sink='sink = "files"')
            self.servers = [Server(root, self.name, config, env, workers=n)]
        else:
            self.database = f"bench_scale_{secrets.token_hex(4)}"
            _pg(f'CREATE DATABASE "{self.database}"')
            url = f"postgresql+psycopg://postgres@{PG[0]}:{PG[1]}/{self.database}"
            config = BASE.format(database=f'database_url = "{url}"', lm=lm, sink='sink = "database"')
            self.servers = [Server(root, f"{self.name}-{i}", config, env, workers=1) for i in range(n)]

    def counters(self) -> dict[str, Any]:
        out: dict[str, Any] = {"statements": {}, "rows_written": 0, "write_transactions": 0, "transactions": 0}
        for server in self.servers:
            one = server.counters()
            for key in ("rows_written", "write_transactions", "transactions"):
                out[key] += one[key]
            out = _sum(out, {k: v for k, v in one.items() if isinstance(v, dict)})
        if self.database:
            out["pg_stat_database"] = _pg_stat(self.database)
        return out

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        if self.database:
            with contextlib.suppress(psycopg.Error):
                _pg(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')


def _delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in after.items():
        if isinstance(value, dict):
            out[key] = _delta(value, before.get(key, {}))
        else:
            out[key] = value - before.get(key, 0)
    return out


def _load(topology: Topology, spec: Any, examples: list[Any], requests: int) -> dict[str, Any]:
    from ratchet.serve.loadtest import run_http

    share = requests // len(topology.servers)
    per_server = CONCURRENCY_PER_PROCESS * topology.n // len(topology.servers)
    started = time.perf_counter()
    with ThreadPoolExecutor(len(topology.servers)) as pool:
        reports = list(pool.map(lambda s: run_http(s.url, spec, examples, queries=share, concurrency=per_server,
                                                   timeout_s=120), topology.servers))
    wall = time.perf_counter() - started
    latencies = sorted(x for r in reports for x in r.latencies_ms)
    completed = sum(r.completed for r in reports)
    return {"requests": completed, "errors": sum(r.error_count for r in reports), "wall_s": round(wall, 3),
            "throughput_rps": round(completed / wall, 2),
            "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p95_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.95))], 1)}


def _per_1000(total: dict[str, Any], idle: dict[str, Any], idle_s: float, seconds: float, requests: int) -> dict:
    """The delta over the loads less the idle background for as long, per 1,000 requests."""
    def net(a: Any, b: Any) -> Any:
        if isinstance(a, dict):
            return {k: net(v, b.get(k, 0) if isinstance(b, dict) else 0) for k, v in a.items()}
        return round((a - b * seconds / idle_s) * 1000 / requests, 1)

    return net(total, idle)


def _run_model(model: str, lm: str, root: Path, env: dict[str, str], args: argparse.Namespace, spec: Any,
               examples: list[Any], console: Console) -> dict[str, Any]:
    from ratchet.serve.loadtest import run_http

    requests = args.embedded_requests if model == "embedded" else args.fast_requests
    topologies = [Topology(kind, n, root / model, env, lm) for kind, n in TOPOLOGIES]
    try:
        for topology in topologies:  # one at a time: on 2 cores, parallel model loads only slow each other
            for server in topology.servers:
                server.start()
            for server in topology.servers:
                server.wait_ready(timeout_s=300)
        for topology in topologies:  # warm every process (connections, caches, first LiteLLM call)
            for server in topology.servers:
                run_http(server.url, spec, examples, queries=8 * topology.n, concurrency=4)
        time.sleep(2)
        before = {t.name: t.counters() for t in topologies}
        time.sleep(IDLE_S)
        idle = {t.name: _delta(t.counters(), before[t.name]) for t in topologies}
        rounds: dict[str, list[dict[str, Any]]] = {t.name: [] for t in topologies}
        written: dict[str, dict[str, Any]] = {}
        load_s: dict[str, float] = {t.name: 0.0 for t in topologies}
        for r in range(args.rounds):
            order = topologies[r % len(topologies):] + topologies[:r % len(topologies)]
            if r % 2:
                order.reverse()
            for topology in order:
                first = topology.counters()
                t0 = time.perf_counter()
                figures = _load(topology, spec, examples, requests)
                time.sleep(1.5)  # counters and telemetry batches flushed (1 s), pg_stat flushed (1 s)
                load_s[topology.name] += time.perf_counter() - t0
                delta = _delta(topology.counters(), first)
                written[topology.name] = _sum(written.get(topology.name, {}), delta)
                rounds[topology.name].append(figures)
                console.print(f"[dim]{model} round {r + 1} {topology.name}: {figures}[/]", highlight=False)
        out: dict[str, Any] = {}
        for topology in topologies:
            runs = rounds[topology.name]
            served = sum(x["requests"] for x in runs)
            out[topology.name] = {
                "processes": topology.n,
                "throughput_rps": round(statistics.median(x["throughput_rps"] for x in runs), 2),
                "p50_ms": round(statistics.median(x["p50_ms"] for x in runs), 2),
                "p95_ms": round(statistics.median(x["p95_ms"] for x in runs), 2),
                "errors": sum(x["errors"] for x in runs),
                "rounds": runs,
                "writes_per_1000_requests": _per_1000(written[topology.name], idle[topology.name], IDLE_S,
                                                      load_s[topology.name], served),
                "idle_writes_per_s": {k: (round(v / IDLE_S, 2) if not isinstance(v, dict) else
                                          {kk: round(vv / IDLE_S, 2) for kk, vv in v.items()})
                                      for k, v in idle[topology.name].items()},
            }
        base = out["workers-1"]
        for figures in out.values():
            figures["ratio_throughput"] = round(figures["throughput_rps"] / base["throughput_rps"], 2)
            figures["ratio_p50"] = round(figures["p50_ms"] / base["p50_ms"], 2)
            figures["ratio_p95"] = round(figures["p95_ms"] / base["p95_ms"], 2)
        return {"requests_per_measurement": requests, "results": out}
    finally:
        for topology in topologies:
            topology.stop()


def _sum(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        out[key] = _sum(a.get(key, {}), value) if isinstance(value, dict) else a.get(key, 0) + value
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedded-requests", type=int, default=48, help="per measurement, embedded model")
    parser.add_argument("--fast-requests", type=int, default=800, help="per measurement, fast stub model")
    parser.add_argument("--models", default="fast,embedded")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--stub", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stub:
        _stub_server(args.stub)
        return

    from ratchet.config import Settings
    from ratchet.data.files import load_examples
    from ratchet.programs import load_programs

    console = Console(stderr=True)
    spec = load_programs(Settings()).get("classify_intent")
    examples = load_examples(spec.data["test"], spec.schema).examples
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ratchet-scaling-") as tmp:
        root = Path(tmp)
        env = bench_env(root)
        stub, stub_port = start_stub()
        result: dict[str, Any] = {**run_info(), "cpus": os.cpu_count(), "idle_window_s": IDLE_S,
                                  "concurrency_per_process": CONCURRENCY_PER_PROCESS, "models": {}}
        try:
            for model in args.models.split(","):
                (root / model).mkdir()
                lm = EMBEDDED_LM if model == "embedded" else STUB_LM.format(api_base=f"http://127.0.0.1:{stub_port}/v1")
                result["models"][model] = _run_model(model, lm, root, env, args, spec, examples, console)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(stub.pid, signal.SIGTERM)
            stub.wait(timeout=10)
    result["duration_s"] = round(time.monotonic() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
        return
    table = Table(title=f"ratchet serve scaling ({os.cpu_count()} CPUs; medians of {args.rounds} rounds)")
    for column in ("model", "topology", "req/s", "× w-1", "p50 ms", "p95 ms", "× p95", "errors",
                   "write tx/1k", "rows/1k"):
        table.add_column(column, justify="right")
    for model, block in result["models"].items():
        for name, f in block["results"].items():
            w = f["writes_per_1000_requests"]
            table.add_row(model, name, str(f["throughput_rps"]), str(f["ratio_throughput"]), str(f["p50_ms"]),
                          str(f["p95_ms"]), str(f["ratio_p95"]), str(f["errors"]), str(w["write_transactions"]),
                          str(w["rows_written"]))
    Console().print(table)


if __name__ == "__main__":
    main()
