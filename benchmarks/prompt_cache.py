"""Prompt caches for every arm: 3 signatures × 2 arms interleaved on the embedded engine, old beside new.

    RATCHET_LM__LOCAL__N_THREADS=1 python benchmarks/prompt_cache.py [--rounds 5] [--target-tokens 1000]
        [--max-tokens 12] [--out benchmarks/results/prompt_cache.json]

The prompts are Ratchet's own: each bundled program (classify_intent, extract_booking,
classify_commit, whose demos come from this repository's git log) in two versions of about
the same length, a baseline and a candidate with different few-shot demos (seeds 0 and 1),
each with as many demos as bring its prompt to ``--target-tokens``; the completion adapter
formats them for held-out inputs. Each
request replays one such prompt as a plain completion (``max_tokens``, temperature 0) into a
real ``LlamaCppEngine``:

- old: the engine as configured before issue 17 (``cache_slots = 2``, no prompt cache);
- new: the defaults now (``cache_slots = 1``, ``prompt_cache_mb`` unset = two contexts' worth).

Each engine lives in its own child process (its RSS is its own); the parent sends both the
same requests in short alternating rounds (which engine goes first alternates), so load from
other work on the machine falls on both. Phases: warm-up (every family twice, not counted),
single (one program only: the single-program latency must not regress), mixed (``--rounds``
rounds of 12 requests, 2 per signature × arm, shuffled). Reported: per-arm p50/p95 in the
mixed phase, candidate p95 ÷ baseline p95 (goal ≤ 1.2), single-program p50, RSS, and the
new engine's snapshot sizes and save/restore times.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_info import run_info

console = Console(stderr=True)
SIGNATURES = ("classify_intent", "extract_booking", "classify_commit")
ARMS = ("baseline", "candidate")
CONFIGS = {"old": {"cache_slots": 2, "prompt_cache_mb": 0}, "new": {}}


# -- prompts ------------------------------------------------------------------------------------
def build_prompts(target_tokens: int, per_family: int) -> dict[tuple[str, str], list[str]]:
    """``per_family`` prompts for each (signature, arm), formatted by Ratchet's completion adapter."""
    import dspy

    from ratchet.config import Settings
    from ratchet.data.files import labelled_examples
    from ratchet.evaluation.fewshot import fewshot_program, training_examples
    from ratchet.lm import CompletionAdapter, ScriptedEngine, ThreadedAsyncEngine
    from ratchet.lm.setup import local_engine
    from ratchet.programs import load_programs

    registry = load_programs(Settings())
    adapter = CompletionAdapter(constrain=False, choice_scoring="off")
    engine = ScriptedEngine(lambda prompt: "")
    lm = dspy.LM("scripted/capture", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 model_type="text")
    counter = local_engine(Settings().lm.local)  # the model's tokenizer (a vocabulary-only load, no weights)

    def first_prompt(module: dspy.Module, inputs: dict[str, Any]) -> str:
        engine.prompts.clear()
        try:
            with dspy.context(lm=lm, adapter=adapter):
                module(**inputs)
        except Exception:  # the empty answer does not parse: only the prompt matters here
            pass
        return engine.prompts[0]

    prompts: dict[tuple[str, str], list[str]] = {}
    for name in SIGNATURES:
        spec = registry.get(name)
        if "train" in spec.data:
            train, tests = training_examples(spec), labelled_examples(spec).examples[:per_family * 2]
        else:  # classify_commit learns from git history: this repository's own
            mined = commit_examples()
            train, tests = mined[per_family * 2:], mined[:per_family * 2]
        inputs = [{k: example[k] for k in spec.schema.input_names} for example in tests]
        for seed, arm in enumerate(ARMS):  # as many demos as bring this arm's prompt to the target length
            offset = seed * per_family
            k = 2
            while k < len(train):
                module = fewshot_program(spec, k, seed=seed, trainset=train)
                if counter.count_tokens(first_prompt(module, inputs[offset])) >= target_tokens:
                    break
                k += 1
            prompts[(name, arm)] = [first_prompt(module, x) for x in inputs[offset:offset + per_family]]
    return prompts


def commit_examples() -> list[Any]:
    """``fix(parser): handle empty input`` → subject ``handle empty input``, type ``fix``, from ``git log``."""
    import re
    import subprocess

    import dspy

    log = subprocess.run(["git", "log", "--format=%s"], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parent).stdout
    pattern = re.compile(r"^(feat|fix|docs|style|refactor|perf|test|build|ci|chore|revert)(\([^)]*\))?!?: (.+)$")
    return [dspy.Example(subject=m.group(3), type=m.group(1)).with_inputs("subject")
            for line in log.splitlines() if (m := pattern.match(line))]


# -- the engine child ---------------------------------------------------------------------------
def _rss_mib() -> dict[str, float]:
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def engine_child(name: str, max_tokens: int, conn: Any) -> None:
    """Serve ``("run", prompts)`` and ``("stats",)`` requests on one engine until ``("stop",)``."""
    from dspy.lm15 import Config, Message, Request

    from ratchet.config import Settings
    from ratchet.lm.engines import llamacpp
    from ratchet.lm.setup import local_engine

    timings: dict[str, list[float]] = {"save_ms": [], "restore_ms": [], "snapshot_mb": [], "snapshot_tokens": []}
    take, restore = llamacpp.take_snapshot, llamacpp.restore_snapshot

    def timed_take(llama: Any, prompt: str) -> Any:
        started = time.perf_counter()
        snapshot = take(llama, prompt)
        timings["save_ms"].append((time.perf_counter() - started) * 1000)
        if snapshot is not None:
            timings["snapshot_mb"].append(snapshot.nbytes / 1e6)
            timings["snapshot_tokens"].append(len(snapshot.tokens))
        return snapshot

    def timed_restore(llama: Any, snapshot: Any) -> bool:
        started = time.perf_counter()
        ok = restore(llama, snapshot)
        timings["restore_ms"].append((time.perf_counter() - started) * 1000)
        return ok

    llamacpp.take_snapshot, llamacpp.restore_snapshot = timed_take, timed_restore
    local = Settings().lm.local.model_copy(update=CONFIGS[name])
    engine = local_engine(local)
    engine.warm_up()
    conn.send({"ready": True, "rss": _rss_mib()})
    while True:
        message = conn.recv()
        if message[0] == "stop":
            break
        if message[0] == "stats":
            prompts = engine._prompts.stats() if engine._prompts is not None else None
            conn.send({"rss": _rss_mib(), "cache_stats": dict(engine.cache_stats), "prompt_cache": prompts,
                       "contexts": engine._created, "timings": timings})
            continue
        out = []
        for prompt in message[1]:
            request = Request(model="m", messages=(Message.user(prompt),),
                              config=Config(max_tokens=max_tokens, temperature=0.0))
            started = time.perf_counter()
            response = engine.complete(request)
            out.append(((time.perf_counter() - started) * 1000, response.usage.input_tokens))
        conn.send(out)
    engine.close()


# -- the parent ---------------------------------------------------------------------------------
def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="mixed rounds of 12 requests")
    parser.add_argument("--single", type=int, default=10, help="requests of the single-program phase")
    parser.add_argument("--target-tokens", type=int, default=1000, help="prompt length of every version")
    parser.add_argument("--max-tokens", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prompt_cache.json"))
    args = parser.parse_args()

    per_family = 2 * args.rounds + 2 + args.single
    prompts = build_prompts(args.target_tokens, per_family)
    families = list(prompts)
    rng = random.Random(args.seed)

    ctx = mp.get_context("spawn")
    children: dict[str, tuple[Any, Any]] = {}
    for name in CONFIGS:
        parent_end, child_end = ctx.Pipe()
        process = ctx.Process(target=engine_child, args=(name, args.max_tokens, child_end), daemon=True)
        process.start()
        children[name] = (process, parent_end)
    start_rss = {name: conn.recv()["rss"] for name, (_, conn) in children.items()}

    def run(name: str, batch: list[str]) -> list[tuple[float, int]]:
        conn = children[name][1]
        conn.send(("run", batch))
        return conn.recv()

    cursor = dict.fromkeys(families, 0)

    def take(family: tuple[str, str]) -> str:
        prompt = prompts[family][cursor[family]]
        cursor[family] += 1
        return prompt

    results: dict[str, dict[str, list]] = {name: {"single": [], "mixed": []} for name in CONFIGS}
    order = list(CONFIGS)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("warm-up, single program, mixed rounds", total=2 + args.rounds)
        warm = [take(f) for _ in range(2) for f in families]  # twice: a family is kept once it recurs
        for name in order:
            run(name, warm)
        progress.advance(task)
        single = [take(("classify_intent", "baseline")) for _ in range(args.single)]
        for i, prompt in enumerate(single):  # one request at a time, old and new alternating who goes first
            for name in (order if i % 2 == 0 else order[::-1]):
                results[name]["single"] += [t for t, _ in run(name, [prompt])]
        progress.advance(task)
        for round_ in range(args.rounds):
            batch = [f for f in families for _ in range(2)]
            rng.shuffle(batch)
            requests = [(f, take(f)) for f in batch]
            for name in (order if round_ % 2 == 0 else order[::-1]):
                timed = run(name, [p for _, p in requests])
                results[name]["mixed"] += [(f, t, n) for (f, _), (t, n) in zip(requests, timed, strict=True)]
            progress.advance(task)

    stats = {}
    for name, (process, conn) in children.items():
        conn.send(("stats",))
        stats[name] = conn.recv()
        conn.send(("stop",))
        process.join(timeout=60)

    summary: dict[str, Any] = {}
    for name in CONFIGS:
        mixed = results[name]["mixed"]
        per_arm = {arm: [t for (_, a), t, _ in mixed if a == arm] for arm in ARMS}
        per_family_ms = {f"{s}/{a}": {"p50": _pct([t for f, t, _ in mixed if f == (s, a)], 0.5),
                                      "p95": _pct([t for f, t, _ in mixed if f == (s, a)], 0.95)}
                         for s, a in families}
        summary[name] = {
            "mixed": {arm: {"p50_ms": _pct(v, 0.5), "p95_ms": _pct(v, 0.95), "n": len(v)}
                      for arm, v in per_arm.items()},
            "candidate_p95_over_baseline_p95": _pct(per_arm["candidate"], 0.95) / _pct(per_arm["baseline"], 0.95),
            "per_family": per_family_ms,
            "single_p50_ms": statistics.median(results[name]["single"]),
            "single_p95_ms": _pct(results[name]["single"], 0.95),
            "rss_mib_after_load": start_rss[name]["VmRSS"],
            "rss_mib_end": stats[name]["rss"]["VmRSS"], "peak_rss_mib": stats[name]["rss"]["VmHWM"],
            "contexts": stats[name]["contexts"], "cache_stats": stats[name]["cache_stats"],
            "prompt_cache": stats[name]["prompt_cache"],
        }
    timings = stats["new"]["timings"]
    snapshot_costs = {key: {"median": statistics.median(v), "max": max(v), "n": len(v)}
                      for key, v in timings.items() if v}
    prompt_tokens = {f"{s}/{a}": n for (s, a), _, n in results["new"]["mixed"]}

    table = Table(title="3 signatures × 2 arms interleaved, after warm-up (ms)", title_justify="left")
    for column in ("engine", "baseline p50", "baseline p95", "candidate p50", "candidate p95", "cand p95 ÷ base p95",
                   "single p50", "RSS MiB", "peak RSS MiB", "contexts"):
        table.add_column(column, justify="right")
    for name in CONFIGS:
        s = summary[name]
        table.add_row(name, *(f"{s['mixed'][a][k]:.0f}" for a in ARMS for k in ("p50_ms", "p95_ms")),
                      f"{s['candidate_p95_over_baseline_p95']:.2f}", f"{s['single_p50_ms']:.0f}",
                      f"{s['rss_mib_end']:.0f}", f"{s['peak_rss_mib']:.0f}", str(s["contexts"]))
    Console().print(table)
    Console().print({"prompt tokens": prompt_tokens, "new engine snapshots": snapshot_costs})

    result = {**run_info(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "configs": CONFIGS,
              "rounds": args.rounds, "max_tokens": args.max_tokens, "target_tokens": args.target_tokens,
              "prompt_tokens": prompt_tokens, "summary": summary, "snapshot_costs": snapshot_costs,
              "goal_candidate_p95_over_baseline_p95": 1.2,
              "met": summary["new"]["candidate_p95_over_baseline_p95"] <= 1.2,
              "raw": {name: {"single_ms": results[name]["single"],
                             "mixed": [[f"{s}/{a}", t] for (s, a), t, _ in results[name]["mixed"]]}
                      for name in CONFIGS}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
