"""What API-key checks add to each request: the same server with keys off, required (cached), required (no cache).

    python benchmarks/auth_overhead.py [--rounds 400] [--out benchmarks/results/auth_overhead.json]

A child process serves one runtime (an instant scripted LM, a real SQLite state database) through three
apps on three loopback ports: ``auth.mode = "off"``, ``"required"`` with the default 5 s key cache, and
``"required"`` with ``auth.cache_seconds = 0`` (the key's row read on every request). The client sends
rounds of ``GET /v1/programs`` and ``POST …/predict`` to the three in turn over keep-alive connections, so
the three variants share the machine's noise; reported are medians and the median paired difference.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

VARIANTS = ("off", "required", "required_nocache")
console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve(home: str, ports: dict[str, int], key_file: str) -> None:
    """Child process: one runtime behind three apps, one per auth variant."""
    import dspy
    import uvicorn

    from ratchet.auth import create_key
    from ratchet.config import Settings
    from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
    from ratchet.serve import Runtime
    from ratchet.serve.app import create_app

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    lm = dspy.LM("scripted/bench", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)
    runtime = Runtime(Settings(home=Path(home)), lms=LMBundle.for_lm(lm, CompletionAdapter()))
    key, _row = create_key(runtime.db, "bench", ["predict", "read"], created_by="benchmark")
    Path(key_file).write_text(key)
    servers = []
    for variant, port in ports.items():
        settings = Settings(home=Path(home))
        settings.auth.mode = "off" if variant == "off" else "required"
        settings.auth.cache_seconds = 0 if variant == "required_nocache" else 5
        app = create_app(settings, runtime=runtime)
        servers.append(uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                     access_log=False, lifespan="on")))

    async def main() -> None:
        await asyncio.gather(*(server.serve() for server in servers))

    asyncio.run(main())


def measure(rounds: int) -> dict:
    home = tempfile.mkdtemp(prefix="ratchet-auth-bench-")
    ports = {variant: _free_port() for variant in VARIANTS}
    key_file = str(Path(home) / "key")
    child = multiprocessing.get_context("spawn").Process(target=serve, args=(home, ports, key_file), daemon=True)
    child.start()
    try:
        clients = {}
        for variant, port in ports.items():
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"{variant} server did not start")
                time.sleep(0.2)
            clients[variant] = httpx.Client(base_url=url, timeout=30)
        key = Path(key_file).read_text()
        headers = {"X-API-Key": key}
        body = {"inputs": {"text": "where is my card?"}}
        timings: dict[str, dict[str, list[float]]] = {v: {"programs": [], "predict": []} for v in VARIANTS}

        def timed(variant: str, kind: str) -> None:
            client = clients[variant]
            started = time.perf_counter()
            if kind == "programs":
                response = client.get("/v1/programs", headers=headers)
            else:
                response = client.post("/v1/programs/classify_intent/predict", json=body, headers=headers)
            elapsed = (time.perf_counter() - started) * 1e6
            if response.status_code != 200:
                raise SystemExit(f"{variant} {kind}: {response.status_code} {response.text[:200]}")
            timings[variant][kind].append(elapsed)

        for _ in range(20):  # warm-up
            for variant in VARIANTS:
                timed(variant, "programs")
                timed(variant, "predict")
        for variant in VARIANTS:
            for kind in ("programs", "predict"):
                timings[variant][kind].clear()
        for _ in range(rounds):
            for kind in ("programs", "predict"):
                for variant in VARIANTS:
                    timed(variant, kind)
    finally:
        child.terminate()
        child.join(10)
    result: dict = {"rounds": rounds, "unit": "microseconds per request (client-side, loopback)"}
    for kind in ("programs", "predict"):
        off = timings["off"][kind]
        row = {"off_median": round(statistics.median(off), 1)}
        for variant in VARIANTS[1:]:
            mine = timings[variant][kind]
            row[f"{variant}_median"] = round(statistics.median(mine), 1)
            row[f"{variant}_added_median"] = round(statistics.median(m - o for m, o in zip(mine, off, strict=True)), 1)
        result[kind] = row
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=400)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "auth_overhead.json")
    args = parser.parse_args()
    result = measure(args.rounds)
    result["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(),
                         "cpus": multiprocessing.cpu_count()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"API key check, {args.rounds} rounds (µs per request, medians)")
    for column in ("endpoint", "keys off", "required", "added", "required, no cache", "added"):
        table.add_column(column, justify="right")
    for kind in ("programs", "predict"):
        row = result[kind]
        table.add_row(kind, f"{row['off_median']:.0f}", f"{row['required_median']:.0f}",
                      f"{row['required_added_median']:+.0f}", f"{row['required_nocache_median']:.0f}",
                      f"{row['required_nocache_added_median']:+.0f}")
    console.print(table)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
