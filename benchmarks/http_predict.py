"""HTTP predict requests per second against ``ratchet serve``'s app, with an instant scripted LM.

    python benchmarks/http_predict.py [--requests 3000] [--concurrency 16] [--workers 1]

Starts the FastAPI app under uvicorn in a child process (loopback, sampling 10 %,
real state database and telemetry), then sends ``--requests`` predict calls over
``--concurrency`` keep-alive connections with Ratchet's own load generator. The
client shares the machine's cores with the server, so this is a floor. Results go
to benchmarks/results/http.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console

HERE = Path(__file__).resolve()


def serve(port: int, home: str) -> None:
    """Child process: the real app around a runtime whose LM answers instantly."""
    import dspy
    import uvicorn

    from ratchet.config import Settings
    from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
    from ratchet.serve import Runtime
    from ratchet.serve.app import create_app

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    lm = dspy.LM("scripted/bench", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)
    settings = Settings(home=Path(home))
    runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
    uvicorn.run(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/http.json"))
    parser.add_argument("--serve", nargs=2, metavar=("PORT", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(int(args.serve[0]), args.serve[1])
        return

    from ratchet.config import Settings
    from ratchet.data.files import load_examples
    from ratchet.programs import load_programs
    from ratchet.serve.loadtest import run_http

    spec = load_programs(Settings()).get("classify_intent")
    examples = load_examples(spec.data["test"], spec.schema).examples
    port = free_port()
    with tempfile.TemporaryDirectory() as home:
        server = subprocess.Popen([sys.executable, str(HERE), "--serve", str(port), home])
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{url}/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.2)
            run_http(url, spec, examples, queries=200, concurrency=args.concurrency)  # warm-up
            report = run_http(url, spec, examples, queries=args.requests, concurrency=args.concurrency).to_dict()
        finally:
            server.terminate()
            server.wait(timeout=30)
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        **report,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    lat = report["latency_ms"]
    Console().print(f"HTTP predict, concurrency {args.concurrency}: [bold]{report['throughput_rps']} req/s[/], "
                    f"p50 {lat['p50']} ms, p99 {lat['p99']} ms, errors {report['errors']} of {report['completed']}")


if __name__ == "__main__":
    main()
