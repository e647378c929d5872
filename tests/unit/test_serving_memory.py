"""Serving 20,000 distinct requests keeps memory flat: no DSPy response cache in serving.

The serving path is real — ``ratchet.Runtime`` with routing, per-arm counters in a SQLite
state database, sampled and redacted telemetry, a ``dspy.ChainOfThought`` program adopted with
``ratchet.instrument`` and a ``dspy.LM`` built with ``cache=True`` — only the model is a
scripted engine, answering each distinct question with a distinct ~450-token chain of
thought and answer. Requests go through ``Runtime.acall`` as the HTTP app sends them, 8 at a
time. It runs in a child process (this file as a script) so pytest's own allocations do not
blur the figure; ``benchmarks/serving_memory.py`` runs the same child with the cache off and
on. By hand::

    .venv/bin/python tests/unit/test_serving_memory.py --home /tmp/h1                  # off
    .venv/bin/python tests/unit/test_serving_memory.py --home /tmp/h2 --lm-cache memory --entries 100000

With the cache on and room for every answer, RSS grows by about 65 MB over the same
requests and the assertion below fails.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REQUESTS = 20_000
WARMUP = 2_000
MAX_GROWTH_MB = 50.0

REASONING = ("The customer ordered a card and it has not arrived. Cards are sent within two working days of "
             "the order and usually arrive five to seven working days later, so after more than ten working days "
             "the card is probably lost in the post, although a wrong or incomplete address is the other common "
             "cause and is worth checking first: the address on the order is shown under Profile > Address. A "
             "card lost in the post may be found and used by someone else, so it should be frozen at once in the "
             "app; freezing is instant and can be undone if the card turns up. Then a replacement should be "
             "ordered under Cards > Lost or stolen. The replacement is free, it ships the next working day, and "
             "the old card stops working as soon as the new one is activated, so there is no risk in ordering it "
             "even if the old card arrives later. The customer may also worry about payments made with the card "
             "details in the meantime; those are covered once reported, and any unknown payment can be disputed "
             "from the transaction itself. Online subscriptions that used the old card will need the new card "
             "number. So the answer should say how long delivery takes, what to do now, how long the replacement "
             "takes and that nothing is lost.")
ANSWER = ("Cards usually arrive within seven working days; the tracking link in the confirmation e-mail shows "
          "where it is. After ten working days, freeze the card in the app and order a replacement under Cards > "
          "Lost or stolen: it is free, ships the next working day, and any payment made with the old card's "
          "details in the meantime is covered.")


def rss_mb() -> float:
    """This process's resident set size (``VmRSS``), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def request(i: int) -> dict[str, str]:
    """The i-th request's inputs: distinct for every i."""
    return {"question": f"My card from order #{i * 7919} has not arrived after {i % 97} days. What now?"}


def answer(prompt: str) -> str:
    """The scripted model: a chain of thought and an answer naming the order (distinct, ~450 tokens)."""
    order = prompt[prompt.rfind("order #") + 7:].split()[0]
    return f" {REASONING}\nAnswer: Order #{order}: {ANSWER}"


def serve(home: Path, *, lm_cache: str, entries: int, requests: int, warmup: int, concurrency: int = 8) -> dict:
    """Serve ``requests`` distinct requests through a Runtime; RSS after ``warmup`` of them and at the end."""
    import dspy

    from ratchet.config import Settings
    from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
    from ratchet.serve import Runtime, instrument

    settings = Settings(home=home)
    settings.serve.lm_cache = lm_cache
    settings.serve.lm_cache_entries = entries
    engine = ScriptedEngine(answer)
    lm = dspy.LM("scripted/memory", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=True,
                 num_retries=0)
    marks: dict[str, float] = {}

    async def drive(runtime: Runtime) -> int:
        failures = 0
        for start in range(0, requests, concurrency):
            if start == warmup:
                gc.collect()
                marks["warm_mb"], marks["warm_at"] = rss_mb(), time.perf_counter()
            batch = range(start, min(start + concurrency, requests))
            results = await asyncio.gather(*(runtime.acall("answer_question", request(i), request_id=f"mem-{i}",
                                                            user_id=f"u-{i % 500}") for i in batch))
            failures += sum(not result.success for result in results)
        return failures

    started = time.perf_counter()
    with Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter())) as runtime:
        instrument(dspy.ChainOfThought("question -> answer"), signature="answer_question", runtime=runtime)
        failures = asyncio.run(drive(runtime))
        gc.collect()
        end_mb = rss_mb()
        served_s = time.perf_counter() - marks["warm_at"]
        cached = len(dspy.cache.memory_cache)
    return {"lm_cache": lm_cache, "entries": entries, "requests": requests, "warmup": warmup,
            "warm_mb": round(marks["warm_mb"], 1), "end_mb": round(end_mb, 1),
            "growth_mb": round(end_mb - marks["warm_mb"], 1), "failures": failures, "engine_calls": engine.calls,
            "cache_entries": cached, "us_per_request": round(served_s / (requests - warmup) * 1e6),
            "seconds": round(time.perf_counter() - started, 1)}


def measure_in_child(home: Path, *args: str) -> dict:
    """Run :func:`serve` in a fresh interpreter (this file as a script) and return its figures."""
    done = subprocess.run([sys.executable, __file__, "--home", str(home), *args], capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_serving_20000_distinct_requests_keeps_memory_flat(tmp_path: Path) -> None:
    figures = measure_in_child(tmp_path / "home")
    assert figures["failures"] == 0 and figures["engine_calls"] == REQUESTS
    assert figures["growth_mb"] < MAX_GROWTH_MB, figures
    assert figures["cache_entries"] == 0  # the LM's cache=True re-enabled nothing...
    assert not (tmp_path / "home" / "cache").exists()  # ...and nothing went to disk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, required=True)
    parser.add_argument("--lm-cache", choices=["off", "memory"], default="off")
    parser.add_argument("--entries", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--warmup", type=int, default=WARMUP)
    args = parser.parse_args()
    print(json.dumps(serve(args.home, lm_cache=args.lm_cache, entries=args.entries, requests=args.requests,
                           warmup=args.warmup)))


if __name__ == "__main__":
    main()
