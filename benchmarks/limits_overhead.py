"""What the limits of issue 13 (item 4) cost per request, side by side with them off, in one run.

    python benchmarks/limits_overhead.py [--requests 2000] [--calls 20000] [--out FILE.json]

(a) End to end: two real uvicorn servers in this process with the same scripted (instant) LM, one with
    the limits on (per-client token bucket at a rate this client never reaches, call gate, field
    lengths), one with them off (rate 0, a gate and field check that do nothing); requests alternate
    between them, one at a time, so both see the same machine noise. Median and p99 latency of
    ``POST /v1/programs/classify_intent/predict``.
(b) Each part alone, each call timed by itself (``perf_counter_ns``): the rate check (client identity and
    a bucket, over 1,000 clients), a slot of the call gate (uncontended, on an event loop), the field
    lengths of a Banking77-sized input. Beside them, the ``limits`` package (PyPI) doing the same per-client
    check with its moving-window and sliding-window-counter strategies, and the memory each keeps for 1,000
    clients at 100 requests each — when ``limits`` is installed (it is not a dependency).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import dspy
import httpx
import uvicorn
from rich.console import Console

from ratchet.config import Settings
from ratchet.config.limits import LimitsSettings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.serve import Runtime
from ratchet.serve.app import create_app
from ratchet.serve.call_gate import CallGate
from ratchet.serve.field_limits import FieldLimits
from ratchet.serve.rate_limit import RateLimiter, TokenBuckets, client_of

console = Console(stderr=True)
TEXT = "I still have not received my new card, it has been two weeks. Where is it?"
CLIENTS = 1000


def _stats(ns: list[int]) -> dict[str, float]:
    ordered = sorted(ns)
    return {"median_us": round(statistics.median(ordered) / 1000, 2),
            "p99_us": round(ordered[int(0.99 * (len(ordered) - 1))] / 1000, 2), "n": len(ordered)}


def _timed(call: Callable[[int], Any], runs: int) -> list[int]:
    for i in range(min(runs, 1000)):  # warm-up
        call(i)
    out = []
    for i in range(runs):
        started = time.perf_counter_ns()
        call(i)
        out.append(time.perf_counter_ns() - started)
    return out


# -- (a) end to end ------------------------------------------------------------------------------------------

class _NoGate:
    """The call gate, off."""

    @asynccontextmanager
    async def aslot(self) -> AsyncIterator[None]:
        yield


class _NoFieldLimits:
    """The field lengths, off."""

    def check(self, signature: str, values: Any) -> None:
        return None


@contextmanager
def _server(home: Path, limited: bool) -> Iterator[str]:
    settings = Settings(home=home)
    settings.telemetry.sampling_rate = 0.0
    # On: the same checks as shipped, at a rate this one client never reaches (the code path is the same, and
    # a refusal would end the run). Off: rate 0 (the check returns at once), no gate, no field lengths.
    settings.limits.requests_per_minute = 1e9 if limited else 0
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    lm = dspy.LM("scripted/bench", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)
    runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
    if not limited:
        runtime.gate = _NoGate()  # type: ignore[assignment]
        runtime.field_limits = _NoFieldLimits()  # type: ignore[assignment]
    server = uvicorn.Server(uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=0, log_level="error",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        runtime.close()


def end_to_end(requests: int) -> dict[str, Any]:
    body = {"inputs": {"text": TEXT}}
    path = "/v1/programs/classify_intent/predict"
    with tempfile.TemporaryDirectory() as tmp, _server(Path(tmp) / "on", True) as on, \
            _server(Path(tmp) / "off", False) as off, httpx.Client(timeout=30) as client:
        times: dict[str, list[int]] = {"on": [], "off": []}
        for i in range(requests + 200):
            for name, url in (("on", on), ("off", off)) if i % 2 else (("off", off), ("on", on)):
                started = time.perf_counter_ns()
                response = client.post(url + path, json=body)
                elapsed = time.perf_counter_ns() - started
                assert response.status_code == 200, response.text
                if i >= 200:
                    times[name].append(elapsed)
    on_stats, off_stats = _stats(times["on"]), _stats(times["off"])
    return {"limits_on": on_stats, "limits_off": off_stats,
            "added_median_us": round(on_stats["median_us"] - off_stats["median_us"], 2)}


# -- (b) each part alone -------------------------------------------------------------------------------------

def parts(calls: int) -> dict[str, Any]:
    settings = LimitsSettings()  # as shipped: 3000 a minute, bursts of 300 (never refused here)
    limiter = RateLimiter(settings)
    requests = [SimpleNamespace(state=SimpleNamespace(), client=SimpleNamespace(host=f"10.0.{i // 256}.{i % 256}"))
                for i in range(CLIENTS)]
    out: dict[str, Any] = {"rate_check": _stats(_timed(
        lambda i: limiter.check(client_of(requests[i % CLIENTS]), "predict"), calls))}
    gate = CallGate(limit=64, wait_s=1.0)

    async def slots() -> list[int]:
        times = []
        for i in range(calls + 1000):
            started = time.perf_counter_ns()
            async with gate.aslot():
                pass
            if i >= 1000:
                times.append(time.perf_counter_ns() - started)
        return times

    out["call_gate_slot"] = _stats(asyncio.run(slots()))
    fields = FieldLimits(settings)
    values = {"text": TEXT}
    out["field_lengths"] = _stats(_timed(lambda i: fields.check("classify_intent", values), calls))
    out["token_bucket_memory"] = _memory(lambda: TokenBuckets(CLIENTS * 2), lambda b, key: b.take(key, 50.0, 300))
    out.update(_limits_package(calls))
    return out


def _memory(make: Callable[[], Any], hit: Callable[[Any, str], Any]) -> dict[str, Any]:
    """Bytes held for 1,000 clients after 100 requests each (tracemalloc, the limiter built inside)."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    limiter = make()
    for _ in range(100):
        for i in range(CLIENTS):
            hit(limiter, f"addr:10.0.{i // 256}.{i % 256}")
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    del limiter
    return {"clients": CLIENTS, "requests_each": 100, "bytes": held, "bytes_per_client": round(held / CLIENTS)}


def _limits_package(calls: int) -> dict[str, Any]:
    try:
        import limits
        from limits import storage, strategies
    except ImportError:
        return {"limits_package": "not installed"}
    item = limits.RateLimitItemPerMinute(3000)
    keys = [f"10.0.{i // 256}.{i % 256}" for i in range(CLIENTS)]
    out: dict[str, Any] = {"limits_package": limits.__version__}
    for name, strategy in (("moving_window", strategies.MovingWindowRateLimiter),
                           ("sliding_window_counter", strategies.SlidingWindowCounterRateLimiter)):
        limiter = strategy(storage.MemoryStorage())
        out[f"limits_{name}_hit"] = _stats(_timed(lambda i, lim=limiter: lim.hit(item, keys[i % CLIENTS]), calls))
        out[f"limits_{name}_memory"] = _memory(lambda s=strategy: s(storage.MemoryStorage()),
                                               lambda lim, key: lim.hit(item, key))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="HTTP requests to each server")
    parser.add_argument("--calls", type=int, default=20000, help="timed calls of each part alone")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/limits_overhead.json"))
    args = parser.parse_args()
    console.print(f"end to end: {args.requests} requests to each server, alternating …")
    result: dict[str, Any] = {"end_to_end": end_to_end(args.requests)}
    console.print(f"each part alone: {args.calls} calls …")
    result["parts"] = parts(args.calls)
    result["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(),
                         "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
