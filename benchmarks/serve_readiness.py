"""How soon a fresh `ratchet serve` is alive, ready, and how fast its first request is once it says ready.

    python benchmarks/serve_readiness.py [--starts 3] [--requests 30] [--shots 40]
                                         [--out benchmarks/results/serve_readiness.json]

A workspace whose production `classify_intent` is a 40-demo version (the prompt shape an optimized
program has: ~1,000 tokens) and whose other programs are their base versions. Each start runs a real
`ratchet serve` process and measures, from the moment it is started:

- live: `/health` answers 200;
- ready: `/ready` answers 200 (self-test remembered, weights loaded, every served version warmed);
- first: the latency of the first `classify_intent` request sent as soon as `/ready` said 200;
- steady: the median latency of the next `--requests` requests (other texts);
- cold: a `classify_intent` request after the two other programs took both llama.cpp contexts
  (`lm.local.cache_slots = 2`): what a first request costs when its prompt prefix is not warm,
  i.e. without the warm-up (weights already loaded).

The goal (issue 11): first ≤ 2 × steady. Before the readiness work, `/health` answered 200 at
once and the first prediction then took 14.7 s (model load and the first prompt).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

console = Console(stderr=True)
ROOT = Path(__file__).resolve().parents[1]
TEXTS = [line for line in (ROOT / "src/ratchet/examples/data/banking77/test.jsonl").read_text().splitlines() if line]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _workspace(directory: Path, shots: int) -> Path:
    """A workspace with a `shots`-demo production version of classify_intent."""
    from ratchet.config import load_settings
    from ratchet.evaluation.fewshot import fewshot_program
    from ratchet.lm.local_model import bundled_weights
    from ratchet.programs import load_programs
    from ratchet.programs.production import ProductionPointers
    from ratchet.programs.versions import VersionStore
    from ratchet.store.db import StateDB

    config = directory / "ratchet.toml"
    config.write_text('home = ".ratchet"\n')
    settings = load_settings(config)
    spec = load_programs(settings).get("classify_intent")
    versions = VersionStore(settings.home_dir)
    saved = versions.save(spec, fewshot_program(spec, shots), lm=bundled_weights().model_id,
                          adapter="CompletionAdapter", notes=f"benchmark: {shots} balanced demos")
    ProductionPointers(StateDB.connect(settings), versions).set("classify_intent", saved.version, actor="benchmark",
                                                                reason="benchmark")
    return config


def _predict(client: httpx.Client, url: str, text: str) -> tuple[float, float]:
    started = time.perf_counter()
    response = client.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": text}})
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    return elapsed, float(response.json()["latency_ms"])


def _one_start(config: Path, requests: int, offset: int) -> dict:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (config.parent / "server.log").open("ab")
    started = time.perf_counter()
    server = subprocess.Popen([sys.executable, "-m", "ratchet", "--config", str(config), "serve", "--port", str(port),
                               "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    live = ready = None
    try:
        with httpx.Client(timeout=120) as client:
            while ready is None:
                if server.poll() is not None:
                    raise SystemExit(f"server exited ({server.returncode}); see {config.parent / 'server.log'}")
                try:
                    if live is None and client.get(f"{url}/health", timeout=1).status_code == 200:
                        live = time.perf_counter() - started
                    if client.get(f"{url}/ready", timeout=1).status_code == 200:
                        ready = time.perf_counter() - started
                except httpx.HTTPError:
                    pass
                if ready is None:
                    time.sleep(0.05)
            first_client, first_server = _predict(client, url, json.loads(TEXTS[offset])["text"])
            steady = [_predict(client, url, json.loads(TEXTS[offset + 1 + i])["text"]) for i in range(requests)]
            for other, inputs in (("extract_booking", {"text": "A table for 2 at 8pm"}),
                                  ("classify_commit", {"subject": "fix: typo"})):
                client.post(f"{url}/v1/programs/{other}/predict", json={"inputs": inputs}).raise_for_status()
            cold_client, _ = _predict(client, url, json.loads(TEXTS[offset + requests + 1])["text"])
    finally:
        server.terminate()
        server.wait(timeout=60)
    steady_client = statistics.median(s[0] for s in steady)
    return {"live_s": live, "ready_s": ready, "first_ms": first_client, "first_server_ms": first_server,
            "steady_median_ms": steady_client, "steady_server_median_ms": statistics.median(s[1] for s in steady),
            "first_over_steady": first_client / steady_client, "cold_ms": cold_client,
            "cold_over_steady": cold_client / steady_client}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--shots", type=int, default=40)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/serve_readiness.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        config = _workspace(Path(tmp), args.shots)
        starts = []
        for i in range(args.starts):
            starts.append(_one_start(config, args.requests, offset=i * (args.requests + 1)))
            console.print(f"start {i + 1}/{args.starts}: ready in {starts[-1]['ready_s']:.1f} s, first "
                          f"{starts[-1]['first_ms']:.0f} ms, steady {starts[-1]['steady_median_ms']:.0f} ms")

    table = Table(title="ratchet serve: live, ready, first request (per start)", title_justify="left")
    for column in ("start", "live s", "ready s", "first ms", "steady median ms", "first ÷ steady", "cold ms",
                   "cold ÷ steady"):
        table.add_column(column, justify="right")
    for i, s in enumerate(starts, 1):
        table.add_row(str(i), f"{s['live_s']:.2f}", f"{s['ready_s']:.2f}", f"{s['first_ms']:.0f}",
                      f"{s['steady_median_ms']:.0f}", f"{s['first_over_steady']:.2f}", f"{s['cold_ms']:.0f}",
                      f"{s['cold_over_steady']:.2f}")
    Console().print(table)
    summary = {key: statistics.median(s[key] for s in starts) for key in starts[0]}
    result = {
        "command": "python benchmarks/serve_readiness.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "shots": args.shots, "requests": args.requests,
        "starts": starts, "median": summary, "goal_first_over_steady": 2.0,
        "met": summary["first_over_steady"] <= 2.0,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
