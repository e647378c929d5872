"""What [otel] export adds per served request, with an instant scripted LM (so Ratchet's overhead is isolated).

    python benchmarks/otel_overhead.py [--n 3000] [--http 1500]

A local OTLP/HTTP sink (a child process answering 200 to every POST /v1/traces, counting the exports) stands in
for the receiver, so the receiver's own work does not land on the measured cores.
(a) ``Runtime.call`` in one process, three runtimes called in turn so all see the same machine noise: export
    off, export on, export on with ``include_content`` (redaction and JSON of inputs and outputs).
(b) HTTP predict end to end: two ``uvicorn`` servers (child processes, export off / on), requests sent one at a
    time, alternating between them, each with a W3C ``traceparent``.
(c) Import cost: what ``import ratchet.serve.otel`` (the SDK and the exporter) adds to a process that has
    ``ratchet.serve.app``, and which OpenTelemetry modules a server with export off has loaded.
Medians (and p99), and on/off ratios. Results go to benchmarks/results/otel.json.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from bench_info import run_info

HERE = Path(__file__).resolve()
INPUTS = {"text": "I still have not received my new card, it has been two weeks. Mail me at jane.doe@example.com"}
MODES = ("off", "on", "on+content")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- the sink ---------------------------------------------------------------------------------------------------
def sink(port: int) -> None:
    """Child process: accept OTLP/HTTP exports (answer 200, empty body), count them on GET."""
    exports = {"posts": 0, "bytes": 0}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            exports["posts"] += 1
            exports["bytes"] += length
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            body = json.dumps(exports).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def wait_http(url: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def child(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(HERE), *args])


# -- (a) in process ---------------------------------------------------------------------------------------------
def settings_for(home: Path, mode: str, endpoint: str):
    from ratchet.config import Settings

    settings = Settings(home=home)
    settings.telemetry.sampling_rate = 0.0
    settings.limits.requests_per_minute = 0  # one client sends them all
    settings.otel.enabled = mode != "off"
    settings.otel.endpoint = endpoint
    settings.otel.include_content = mode == "on+content"
    return settings


def scripted_bundle():
    import dspy

    from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine

    engine = ScriptedEngine(lambda prompt: " card_arrival")
    lm = dspy.LM("scripted/bench", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)
    return LMBundle.for_lm(lm, CompletionAdapter())


def in_process(tmp: Path, endpoint: str, n: int) -> dict:
    from ratchet.serve import Runtime

    runtimes = {mode: Runtime(settings_for(tmp / f"home-{mode}", mode, endpoint), lms=scripted_bundle())
                for mode in MODES}
    times: dict[str, list[float]] = {mode: [] for mode in MODES}
    try:
        for i in range(n + 200):
            traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
            for mode in MODES if i % 2 else reversed(MODES):  # alternate the order too
                started = time.perf_counter()
                result = runtimes[mode].call("classify_intent", INPUTS, trace_context={"traceparent": traceparent})
                elapsed = time.perf_counter() - started
                assert result.success, result.error
                if i >= 200:  # warm-up done
                    times[mode].append(elapsed * 1e6)
    finally:
        for runtime in runtimes.values():
            runtime.close()  # flushes the queued spans to the sink
    return summarize(times, "us")


# -- (b) over HTTP ----------------------------------------------------------------------------------------------
def serve(port: int, home: str, mode: str, endpoint: str) -> None:
    """Child process: the real app around a runtime whose LM answers instantly, export ``mode``."""
    import dspy
    import uvicorn

    from ratchet.serve import Runtime
    from ratchet.serve.app import create_app

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    runtime = Runtime(settings_for(Path(home), mode, endpoint), lms=scripted_bundle())
    uvicorn.run(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def over_http(tmp: Path, endpoint: str, n: int) -> dict:
    modes = MODES[:2]
    ports = {mode: free_port() for mode in modes}
    servers = [child("--serve", str(ports[mode]), str(tmp / f"http-{mode}"), mode, endpoint) for mode in modes]
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    traced = 0
    try:
        for mode in modes:
            wait_http(f"http://127.0.0.1:{ports[mode]}/health")
        with httpx.Client(timeout=30) as client:
            for i in range(n + 100):
                headers = {"traceparent": f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"}
                for mode in modes if i % 2 else reversed(modes):
                    url = f"http://127.0.0.1:{ports[mode]}/v1/programs/classify_intent/predict"
                    started = time.perf_counter()
                    answer = client.post(url, json={"inputs": INPUTS}, headers=headers)
                    elapsed = time.perf_counter() - started
                    assert answer.status_code == 200, answer.text
                    traced += mode == "on" and "traceresponse" in answer.headers
                    if i >= 100:
                        times[mode].append(elapsed * 1e6)
    finally:
        for server in servers:
            server.terminate()
            server.wait(timeout=30)
    return {**summarize(times, "us"), "traceresponse_headers": traced}


def summarize(times: dict[str, list[float]], unit: str) -> dict:
    rows = {mode: {"calls": len(values), f"p50_{unit}": round(statistics.median(values), 1),
                   f"p99_{unit}": round(quantile(values, 0.99), 1), f"mean_{unit}": round(statistics.fmean(values), 1)}
            for mode, values in times.items()}
    base = rows["off"][f"p50_{unit}"]
    for row in rows.values():
        row["added_p50_" + unit] = round(row[f"p50_{unit}"] - base, 1)
        row["ratio_p50"] = round(row[f"p50_{unit}"] / base, 3)
    return {"modes": rows}


# -- (c) imports ------------------------------------------------------------------------------------------------
def import_cost(repeats: int = 5) -> dict:
    probe = ("import sys, time\nimport ratchet.serve.app\nfrom ratchet.serve.runtime import Runtime\n"
             "off = sorted(m for m in sys.modules if m.startswith('opentelemetry'))\n"
             "t = time.perf_counter()\nimport ratchet.serve.otel\nms = (time.perf_counter() - t) * 1000\n"
             "print(ms, len(off), int(any(m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter')) "
             "for m in off)))\n")
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
        ms, count, sdk = out.split()[-3:]
        runs.append((float(ms), int(count), int(sdk)))
    return {"import_ratchet_serve_otel_ms_median": round(statistics.median(r[0] for r in runs), 1),
            "opentelemetry_modules_loaded_with_export_off": runs[0][1],
            "sdk_or_exporter_loaded_with_export_off": bool(runs[0][2])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=3000, help="in-process calls per mode")
    parser.add_argument("--http", type=int, default=1500, help="HTTP requests per mode")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/otel.json"))
    parser.add_argument("--sink", nargs=1, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=4, metavar=("PORT", "HOME", "MODE", "ENDPOINT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink:
        return sink(int(args.sink[0]))
    if args.serve:
        return serve(int(args.serve[0]), args.serve[1], args.serve[2], args.serve[3])

    import dspy

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    os.environ.setdefault("OTEL_BSP_SCHEDULE_DELAY", "1000")
    sink_port = free_port()
    receiver = child("--sink", str(sink_port))
    endpoint = f"http://127.0.0.1:{sink_port}"
    try:
        wait_http(endpoint)
        with tempfile.TemporaryDirectory() as tmp:
            local = in_process(Path(tmp), endpoint, args.n)
            http = over_http(Path(tmp), endpoint, args.http)
        time.sleep(1.5)
        exports = httpx.get(endpoint).json()
    finally:
        receiver.terminate()
        receiver.wait(timeout=30)
    result = {
        **run_info(),
        "in_process": local,
        "http": http,
        "sink_exports": exports,
        "imports": import_cost(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console = Console()
    for title, block, unit in (("Runtime.call, in process (µs)", local, "us"), ("HTTP predict (µs)", http, "us")):
        table = Table(title=title)
        for column in ("export", "calls", "p50", "p99", "added p50", "p50 ratio"):
            table.add_column(column, justify="right")
        for mode, row in block["modes"].items():
            table.add_row(mode, str(row["calls"]), str(row[f"p50_{unit}"]), str(row[f"p99_{unit}"]),
                          f"[bold]{row['added_p50_' + unit]}[/]", f"[bold]{row['ratio_p50']}[/]")
        console.print(table)
    imports = result["imports"]
    console.print(f"sink received {exports['posts']} exports ({exports['bytes']} bytes); answers of the HTTP "
                  f"server with export on that named their span (traceresponse): {http['traceresponse_headers']}")
    console.print(f"import ratchet.serve.otel (SDK + exporter): {imports['import_ratchet_serve_otel_ms_median']} ms; "
                  f"with export off the SDK/exporter loaded: {imports['sdk_or_exporter_loaded_with_export_off']}")


if __name__ == "__main__":
    main()
