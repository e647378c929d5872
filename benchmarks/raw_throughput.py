"""Ratchet's throughput against raw llama.cpp: the same completions, side by side, at concurrency 1, 2 and 4.

    RATCHET_LM__LOCAL__N_THREADS=1 python benchmarks/raw_throughput.py [--rounds 6] [--requests 8]
        [--signature extract_booking] [--shots 8] [--contexts 2] [--concurrency 1,2,4]
        [--out benchmarks/results/raw_throughput.json]

Ratchet: a real `ratchet serve` process (HTTP on loopback, the embedded model, default
telemetry and counters) serving a ``--shots``-demo production version of ``--signature``,
``lm.local.pool_size = --contexts``. Raw: llama-cpp-python's ``Llama.create_completion``
called directly in this process, on ``--contexts`` ``Llama`` objects loaded from the same
GGUF file with the same ``n_ctx``, ``n_threads``, ``n_batch``, seed and weight repacking.

Same requests: before the server starts, the same program version runs once per input in
this process through Ratchet's own runtime, and every ``create_completion`` call it makes
(prompt, max_tokens, temperature, stop, grammar) is recorded; raw replays exactly those calls
per request, the server gets the inputs over HTTP. Concurrency ``c`` is ``c`` client threads
(raw: ``c`` threads sharing the ``--contexts`` contexts, as the server's pool does; 2 contexts
of 1 thread each = the machine's 2 cores; 4 contexts would only oversubscribe them). Rounds
alternate raw and Ratchet (which goes first alternates) in short bursts of
``--requests × c`` requests, so load from other work falls on both; medians of the rounds.
Where the time goes: each request's latency (raw: the calls; Ratchet: at the client, and the
runtime's own ``latency_ms`` from inside the server), medians per concurrency.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_info import run_info

console = Console(stderr=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _workspace(directory: Path, signature: str, shots: int) -> Path:
    """A workspace whose production ``signature`` is a ``shots``-demo version."""
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
    spec = load_programs(settings).get(signature)
    versions = VersionStore(settings.home_dir)
    saved = versions.save(spec, fewshot_program(spec, shots), lm=bundled_weights().model_id,
                          adapter="CompletionAdapter", notes=f"benchmark: {shots} balanced demos")
    ProductionPointers(StateDB.connect(settings), versions).set(signature, saved.version, actor="benchmark",
                                                                reason="benchmark")
    return config


def _inputs(signature: str, count: int) -> list[dict[str, Any]]:
    from ratchet.config import Settings
    from ratchet.data.files import labelled_examples
    from ratchet.programs import load_programs

    spec = load_programs(Settings()).get(signature)
    examples = labelled_examples(spec).examples[:count]
    return [{k: example[k] for k in spec.schema.input_names} for example in examples]


def capture_calls(config: Path, signature: str, inputs: list[dict[str, Any]]) -> tuple[list[list[dict]], Any]:
    """Run each input through Ratchet's runtime in this process; the llama.cpp calls each made, and the engine."""
    from ratchet.config import load_settings
    from ratchet.lm.engines import llamacpp
    from ratchet.serve import Runtime

    settings = load_settings(config)
    grammars: dict[int, str] = {}
    original_grammar = llamacpp.LlamaCppEngine._grammar

    def grammar(self: Any, text: str) -> Any:
        compiled = original_grammar(self, text)
        grammars[id(compiled)] = text
        return compiled

    recorded: list[dict] = []
    original_new = llamacpp.LlamaCppEngine._new_llama

    def new_llama(self: Any) -> Any:
        llama = original_new(self)
        complete = llama.create_completion

        def recording(**kwargs: Any) -> Any:
            grammar_obj = kwargs.get("grammar")
            recorded.append({**{k: v for k, v in kwargs.items() if k != "grammar"},
                             "grammar": None if grammar_obj is None else grammars[id(grammar_obj)]})
            return complete(**kwargs)

        llama.create_completion = recording
        return llama

    llamacpp.LlamaCppEngine._grammar, llamacpp.LlamaCppEngine._new_llama = grammar, new_llama
    try:
        runtime = Runtime(settings)
        calls = []
        for item in inputs:
            recorded.clear()
            result = runtime.call(signature, item)
            if not result.success:
                raise SystemExit(f"capture failed for {item}: {result.error_type} {result.public_error()}")
            calls.append(list(recorded))
        engine = runtime.lms.engine
        runtime.close()
    finally:
        llamacpp.LlamaCppEngine._grammar, llamacpp.LlamaCppEngine._new_llama = original_grammar, original_new
    return calls, engine


class RawPool:
    """``contexts`` Llama objects as Ratchet's engine makes them; a call takes the most recently returned one."""

    def __init__(self, engine: Any, contexts: int) -> None:
        from llama_cpp import LlamaGrammar

        from ratchet.lm import llamacpp_native as native

        self._idle: queue.LifoQueue[Any] = queue.LifoQueue()
        for _ in range(contexts):
            self._idle.put(native.new_llama(engine.model_path, extra_buffers=engine.extra_buffers.enabled,
                                            n_ctx=engine.n_ctx, n_threads=engine.n_threads, n_batch=engine.n_batch,
                                            seed=engine.seed, verbose=False))
        self._grammars: dict[str, Any] = {}
        self._grammar_class = LlamaGrammar

    def prepare(self, calls: list[list[dict]]) -> None:
        for request in calls:
            for call in request:
                if call["grammar"] and call["grammar"] not in self._grammars:
                    self._grammars[call["grammar"]] = self._grammar_class.from_string(call["grammar"], verbose=False)

    def request(self, calls: list[dict]) -> int:
        """Make one request's calls; the completion tokens generated."""
        llama = self._idle.get()
        try:
            tokens = 0
            for call in calls:
                kwargs = {k: v for k, v in call.items() if k != "grammar"}
                if call["grammar"]:
                    kwargs["grammar"] = self._grammars[call["grammar"]]
                out = llama.create_completion(**kwargs)
                tokens += int(out["usage"]["completion_tokens"])
            return tokens
        finally:
            self._idle.put(llama)


def _burst(work: Any, items: list[Any], concurrency: int) -> float:
    """Run ``work(item)`` over ``items`` on ``concurrency`` threads; requests per second."""
    pending: queue.Queue[Any] = queue.Queue()
    for item in items:
        pending.put(item)
    errors: list[BaseException] = []

    def worker() -> None:
        while True:
            try:
                item = pending.get_nowait()
            except queue.Empty:
                return
            try:
                work(item)
            except BaseException as exc:
                errors.append(exc)
                return

    started = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return len(items) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--requests", type=int, default=8, help="requests per burst and unit of concurrency")
    parser.add_argument("--signature", default="extract_booking")
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--contexts", type=int, default=2, help="llama.cpp contexts on both sides (pool_size)")
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--inputs", type=int, default=24, help="distinct inputs (held-out examples), cycled")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/raw_throughput.json"))
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    os.environ["RATCHET_LM__LOCAL__POOL_SIZE"] = str(args.contexts)
    os.environ.setdefault("RATCHET_LM__LOCAL__N_THREADS", "1")

    with tempfile.TemporaryDirectory() as tmp:
        config = _workspace(Path(tmp), args.signature, args.shots)
        inputs = _inputs(args.signature, args.inputs)
        console.print(f"capturing the llama.cpp calls of {len(inputs)} {args.signature} requests …")
        calls, engine = capture_calls(config, args.signature, inputs)
        raw = RawPool(engine, args.contexts)
        engine.close()
        raw.prepare(calls)
        by_input = {json.dumps(item, sort_keys=True): request for item, request in zip(inputs, calls, strict=True)}

        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        log = (Path(tmp) / "server.log").open("ab")
        server = subprocess.Popen([sys.executable, "-m", "ratchet", "--config", str(config), "serve", "--port",
                                   str(port), "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
        local = threading.local()

        spans: dict[int, dict[str, list[float]]] = {c: {"raw_ms": [], "client_ms": [], "server_ms": []}
                                                    for c in levels}
        current = {"c": levels[0]}

        def ratchet_request(item: dict[str, Any]) -> None:
            client = getattr(local, "client", None)
            if client is None:
                client = local.client = httpx.Client(timeout=300)
            started = time.perf_counter()
            response = client.post(f"{url}/v1/programs/{args.signature}/predict", json={"inputs": item})
            response.raise_for_status()
            spans[current["c"]]["client_ms"].append((time.perf_counter() - started) * 1000)
            spans[current["c"]]["server_ms"].append(float(response.json()["latency_ms"]))

        def raw_request(item: dict[str, Any]) -> None:
            started = time.perf_counter()
            raw.request(by_input[json.dumps(item, sort_keys=True)])
            spans[current["c"]]["raw_ms"].append((time.perf_counter() - started) * 1000)

        try:
            with httpx.Client(timeout=2) as probe:
                while True:
                    if server.poll() is not None:
                        raise SystemExit(f"server exited ({server.returncode}); see {tmp}/server.log")
                    try:
                        if probe.get(f"{url}/ready").status_code == 200:
                            break
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.2)
            for item in inputs[:4]:  # both sides warm: weights paged in, prompt prefix cached
                ratchet_request(item)
                raw_request(item)
            for values in spans[levels[0]].values():
                values.clear()
            rates: dict[int, dict[str, list[float]]] = {c: {"raw": [], "ratchet": []} for c in levels}
            sides = {"raw": raw_request, "ratchet": ratchet_request}
            cursor = 0
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as progress:
                task = progress.add_task("rounds (raw and ratchet alternating)", total=args.rounds * len(levels))
                for round_ in range(args.rounds):
                    for c in levels:
                        current["c"] = c
                        batch = [inputs[(cursor + i) % len(inputs)] for i in range(args.requests * c)]
                        cursor += len(batch)
                        order = ["raw", "ratchet"] if (round_ + c) % 2 == 0 else ["ratchet", "raw"]
                        for side in order:
                            rates[c][side].append(_burst(sides[side], batch, c))
                        progress.advance(task)
        finally:
            server.terminate()
            server.wait(timeout=60)

    rows = []
    for c in levels:
        ratios = [r / w for r, w in zip(rates[c]["ratchet"], rates[c]["raw"], strict=True)]
        latency = {key: statistics.median(v) for key, v in spans[c].items() if v}
        rows.append({"concurrency": c, "median_request_ms": latency, "raw_rps": statistics.median(rates[c]["raw"]),
                     "ratchet_rps": statistics.median(rates[c]["ratchet"]),
                     "ratio_median_of_rounds": statistics.median(ratios), "ratios": ratios,
                     "raw_rounds": rates[c]["raw"], "ratchet_rounds": rates[c]["ratchet"]})
    table = Table(title=f"{args.signature} ({args.shots} demos), {args.contexts} contexts × "
                        f"{engine.n_threads} thread: requests/s", title_justify="left")
    for column in ("concurrency", "raw llama.cpp", "ratchet serve", "ratchet ÷ raw (median of rounds)", "min–max",
                   "request ms: raw / ratchet client / ratchet server"):
        table.add_column(column, justify="right")
    for row in rows:
        ms = row["median_request_ms"]
        table.add_row(str(row["concurrency"]), f"{row['raw_rps']:.2f}", f"{row['ratchet_rps']:.2f}",
                      f"{row['ratio_median_of_rounds']:.3f}",
                      f"{min(row['ratios']):.2f}–{max(row['ratios']):.2f}",
                      f"{ms['raw_ms']:.0f} / {ms['client_ms']:.0f} / {ms['server_ms']:.0f}")
    Console().print(table)
    calls_per_request = statistics.mean(len(c) for c in calls)
    result = {**run_info(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "signature": args.signature,
              "shots": args.shots, "contexts": args.contexts, "n_threads": engine.n_threads,
              "requests_per_burst_per_concurrency": args.requests, "rounds": args.rounds,
              "llama_calls_per_request": calls_per_request,
              "prompt_chars_median": statistics.median(len(c[0]["prompt"]) for c in calls),
              "max_tokens": calls[0][0].get("max_tokens"), "rows": rows, "goal_ratio": 0.9,
              "met": all(row["ratio_median_of_rounds"] >= 0.9 for row in rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
