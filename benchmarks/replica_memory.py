"""Memory of one `ratchet serve` replica, embedded model vs a remote LM: what a Kubernetes pod must request.

    python benchmarks/replica_memory.py [--reps 3] [--queries 300] [--idle-s 10]
                                        [--out benchmarks/results/replica_memory.json]

Each run starts a real `ratchet serve` (one worker, loopback, a fresh home and a fresh
``RATCHET_CACHE_DIR``, so the model self-test runs as it does in a pod whose cache is an emptyDir)
and samples, every 100 ms, the resident memory (``VmRSS``) of the server and every process under it
(the self-test child included: a pod's cgroup counts it too). Figures per run:

- ``peak_start_mb``: the largest sampled sum from start to ``/ready`` (self-test child and load);
- ``idle_mb``: the server ``--idle-s`` seconds after ``/ready`` (anon/file split: the GGUF weights are
  a file mapping, charged to the pod's cgroup as page cache);
- ``peak_load_mb``/``end_load_mb``: the largest sample while ``ratchet loadtest --target`` sends
  ``--queries`` ``classify_intent`` requests, and the last one (connections: the embedded model's 4 call
  slots, ``serve.max_concurrent_calls`` auto with ``pool_size = 1``, so none is refused as overloaded;
  16 with the remote LM);
- ``hwm_mb``: the kernel's high-water mark (``VmHWM``) of the server process at the end;
- ``live_s``/``ready_s``: seconds from start to ``/health`` 200 and ``/ready`` 200 (the startup probe).

Modes, repetitions interleaved so they share the machine's noise:

- ``embedded``: the default ``[lm] model = "local"`` (Gemma 3 270M Q4_K_M under llama.cpp);
- ``remote``: ``[lm] model = "openai/…"`` with ``api_base`` at a scripted OpenAI-compatible server
  in this process (20 ms per answer, DSPy chat format): LiteLLM's client path, no weights loaded.

Results go to benchmarks/results/replica_memory.json; medians are what docs/operations.md sizes pods by.
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
import threading
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from fake_openai import start_chat_server

MODES = ("embedded", "remote")
CONCURRENCY = {"embedded": 4, "remote": 16}
REMOTE_DELAY_S = 0.02
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, RssAnon, RssFile of one process in KiB (empty when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
            out[key] = int(value.split()[0])
    return out


def _tree(root: int) -> list[int]:
    """``root`` and every process under it."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


class Sampler(threading.Thread):
    """Sums the tree's VmRSS every 100 ms; ``mark`` names the phase the next samples belong to."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.phase, self.stop = pid, "start", threading.Event()
        self.samples: dict[str, list[float]] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            kib = sum(_status(pid).get("VmRSS", 0) for pid in _tree(self.pid))
            if kib:
                self.samples.setdefault(self.phase, []).append(kib / 1024)
            time.sleep(0.1)


def _write_config(tmp: Path, mode: str, lm_port: int) -> Path:
    lines = [f'home = "{tmp / "home"}"']
    if mode == "remote":
        lines += ["[lm]", 'model = "openai/bench-remote"', f'api_base = "http://127.0.0.1:{lm_port}/v1"',
                  'api_key_env = "BENCH_LM_KEY"', "num_retries = 0"]
    path = tmp / "ratchet.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _wait(url: str, proc: subprocess.Popen, started: float, timeout: float = 300) -> float:
    while time.monotonic() - started < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"ratchet serve exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return time.monotonic() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer 200 within {timeout:g} s")


def run_once(mode: str, lm_port: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        config = _write_config(tmp, mode, lm_port)
        env = {**os.environ, "RATCHET_CACHE_DIR": str(tmp / "cache"), "BENCH_LM_KEY": "sk-bench"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        ratchet = [sys.executable, "-m", "ratchet", "--config", str(config)]
        started = time.monotonic()
        server = subprocess.Popen([*ratchet, "serve", "--host", "127.0.0.1", "--port", str(port),
                                   "--log-level", "warning"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        sampler = Sampler(server.pid)
        sampler.start()
        try:
            live_s = _wait(f"{base}/health", server, started)
            ready_s = _wait(f"{base}/ready", server, started)
            sampler.phase = "idle"
            time.sleep(args.idle_s)
            idle = _status(server.pid)
            sampler.phase = "load"
            done = subprocess.run([*ratchet, "loadtest", "--target", base, "--signature", "classify_intent",
                                   "--queries", str(args.queries), "--concurrency", str(CONCURRENCY[mode]),
                                   "--json"], env=env, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise SystemExit(f"loadtest failed ({mode}):\n{done.stderr[-2000:]}")
            report = json.loads(done.stdout)
            end = _status(server.pid)
            sampler.stop.set()
            sampler.join()
        finally:
            server.terminate()
            try:
                _, stderr = server.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                _, stderr = server.communicate()
    mb = 1024
    return {
        "mode": mode, "live_s": round(live_s, 2), "ready_s": round(ready_s, 2),
        "peak_start_mb": round(max(sampler.samples.get("start", [0])), 1),
        "idle_mb": round(idle["VmRSS"] / mb, 1), "idle_anon_mb": round(idle["RssAnon"] / mb, 1),
        "idle_file_mb": round(idle["RssFile"] / mb, 1),
        "peak_load_mb": round(max(sampler.samples.get("load", [0])), 1),
        "end_load_mb": round(end["VmRSS"] / mb, 1), "hwm_mb": round(end["VmHWM"] / mb, 1),
        "throughput_rps": report["throughput_rps"], "p50_ms": report["latency_ms"]["p50"],
        "errors": report["errors"], "errors_by_type": report["errors_by_type"],
        "completed": report["completed"], "stderr_tail": stderr[-500:],
    }


FIELDS = ("live_s", "ready_s", "peak_start_mb", "idle_mb", "idle_anon_mb", "idle_file_mb", "peak_load_mb",
          "end_load_mb", "hwm_mb", "throughput_rps", "p50_ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/replica_memory.json"))
    args = parser.parse_args()
    fake = start_chat_server(delay_s=REMOTE_DELAY_S)
    began, load_before = time.time(), os.getloadavg()
    runs: dict[str, list[dict]] = {mode: [] for mode in args.modes}
    for _ in range(args.reps):
        for mode in args.modes:
            runs[mode].append(run_once(mode, fake.server_address[1], args))
    fake.shutdown()
    medians = {mode: {key: round(statistics.median(r[key] for r in rs), 2) for key in FIELDS}
               for mode, rs in runs.items()}
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "queries": args.queries, "concurrency": CONCURRENCY,
        "load_average_before": load_before, "idle_s": args.idle_s, "reps": args.reps,
        "seconds": round(time.time() - began, 1), "medians": medians,
        "errors": {mode: sum(r["errors"] for r in rs) for mode, rs in runs.items()},
        "runs": [run for rs in runs.values() for run in rs],
    }
    result["load_average_after"] = os.getloadavg()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    table = Table(title=f"One `ratchet serve` replica, MiB (median of {args.reps})")
    table.add_column("measure")
    for mode in runs:
        table.add_column(mode, justify="right")
    for key in FIELDS:
        table.add_row(key, *(str(medians[mode][key]) for mode in runs))
    Console().print(table)
    Console().print(f"[dim]{result['machine']} · {result['seconds']} s · errors {result['errors']}[/dim]")


if __name__ == "__main__":
    main()
