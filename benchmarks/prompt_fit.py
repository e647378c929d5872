"""What the context check costs per request on the embedded model (:class:`ratchet.serve.fit.PromptFit`).

    python benchmarks/prompt_fit.py [--texts 1000] [--out benchmarks/results/prompt_fit.json]

For real Banking77 test texts on ``classify_intent`` (zero-shot and with 8 demos) it times, each call alone
(``perf_counter_ns``, after a warm-up pass): the whole check as served (render the prompt with the serving
adapter, then the byte bounds — the tokenizer runs only for prompts near or over the limit); the same with the
tokenizer forced (``llama.cpp``'s own, vocabulary-only load); and the 30 KB text of issue 13, refused.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ratchet.config import Settings
from ratchet.evaluation import fewshot_program
from ratchet.lm import build_lms
from ratchet.programs import load_programs
from ratchet.serve.fit import PromptFit

console = Console(stderr=True)
TEST = Path(__file__).parents[1] / "src" / "ratchet" / "examples" / "data" / "banking77" / "test.jsonl"


def _timed(call: Callable[[], Any], runs: int) -> list[float]:
    call()  # warm-up
    out = []
    for _ in range(runs):
        started = time.perf_counter_ns()
        call()
        out.append((time.perf_counter_ns() - started) / 1000)
    return out


def _summary(times_us: list[float]) -> dict[str, float]:
    ordered = sorted(times_us)
    return {"median": round(statistics.median(ordered), 1),
            "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 1), "n": len(ordered)}


def _per_text(fit: PromptFit, module: Any, texts: list[str], neutral: Callable[[], Any]) -> list[float]:
    """One timed check per text (after one untimed, which also measures the version's own prompt once)."""
    out: list[float] = []
    for text in texts:
        out.extend(_timed(lambda value=text: fit.check(module, {"text": value}, neutral), 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prompt_fit.json"))
    args = parser.parse_args()

    settings = Settings()
    bundle = build_lms(settings.lm, cache=False)
    spec = load_programs(settings).get("classify_intent")
    texts = [json.loads(line)["text"] for line in TEST.read_text().splitlines()[: args.texts]]
    neutral = spec.schema.neutral_inputs
    fit = PromptFit(bundle)
    forced = PromptFit(bundle)
    forced._fast_bytes = 0  # always count tokens
    result: dict[str, Any] = {"limit_tokens": fit.limit, "method": fit.method, "texts": len(texts), "programs": {}}
    for name, k in (("zero-shot", 0), ("8 demos", 8), ("24 demos", 24)):
        module = fewshot_program(spec, k)
        predictor = module.predictors()[0]
        prompt = bundle.adapter.format(predictor.signature, predictor.demos, {"text": texts[0]})[0]["content"]
        result["programs"][name] = {
            "prompt_bytes_first_text": len(prompt.encode()),
            "prompt_tokens_first_text": bundle.engine.count_tokens(prompt),
            "check_as_served_us": _summary(_per_text(fit, module, texts, neutral)),
            "check_tokenized_us": _summary(_per_text(forced, module, texts, neutral)),
        }
        console.print(name, result["programs"][name])
    # A small budget (1,000 tokens) puts the 24-demo prompt over the whole-prompt byte bound: the second bound
    # (the version's own prompt counted once, plus the bytes the input adds) settles it without the tokenizer.
    small = PromptFit(bundle)
    small.limit, small._fast_bytes = 1000, 999
    result["programs"]["24 demos, 1,000-token budget"] = {
        "check_as_served_us": _summary(_per_text(small, fewshot_program(spec, 24), texts, neutral))}
    console.print(result["programs"]["24 demos, 1,000-token budget"])
    long_text = " ".join(f"card{i} arrived late" for i in range(1800))
    module = fewshot_program(spec, 0)
    refused = fit.check(module, {"text": long_text}, neutral)
    result["text_30kb"] = {"bytes": len(long_text.encode()), "tokens": refused.tokens if refused else None,
                           "refused": refused is not None,
                           "check_us": _summary(_timed(lambda: fit.check(module, {"text": long_text}, neutral), 20))}
    result["machine"] = {"python": sys.version.split()[0], "platform": platform.platform(),
                         "cpu": platform.processor() or platform.machine(), "date": time.strftime("%Y-%m-%d")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    console.print(result["text_30kb"])


if __name__ == "__main__":
    main()
