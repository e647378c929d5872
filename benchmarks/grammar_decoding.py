"""What decoding under a grammar costs per token on the embedded model, three ways side by side.

    python benchmarks/grammar_decoding.py [--n 20] [--out benchmarks/results/grammar_decoding.json]

For each of ``--n`` held-out ``extract_booking`` messages (zero-shot prompts as the completion
adapter renders them under its grammar), interleaved on the same llama.cpp context:

- ``free``: no grammar, stopped after as many tokens as the grammar's answer had;
- ``llama-cpp-python``: the grammar in llama-cpp-python's sampler chain (filters the whole
  vocabulary at every token);
- ``ratchet``: Ratchet's greedy grammar sampler (checks the best token; filters only when rejected).

Reports the median milliseconds per generated token of each and whether the two grammar
paths produced the same text.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import dspy
from llama_cpp import LlamaGrammar
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ratchet.config import Settings
from ratchet.data import load_examples, seeded_sample
from ratchet.lm import build_lms
from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.answer_grammar import answer_grammar
from ratchet.lm.engines.grammar import greedy_grammar
from ratchet.programs import load_programs

console = Console(stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/grammar_decoding.json"))
    args = parser.parse_args()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    settings = Settings()
    spec = load_programs(settings).get("extract_booking")
    bundle = build_lms(settings.lm)
    bundle.warm_up()
    engine = bundle.engine
    assert engine is not None
    adapter = CompletionAdapter(constrain=True)
    signature = spec.build().signature
    grammar = answer_grammar(signature)
    example = adapter.format_example(signature)
    test = seeded_sample(load_examples(spec.data["test"], spec.schema).examples, args.n, args.seed)

    per_token: dict[str, list[float]] = {"free": [], "llama-cpp-python": [], "ratchet": []}
    same = 0
    filtered_steps = 0
    steps = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("grammar decoding", total=len(test))
        for item in test:
            prompt = adapter.render(signature, [example] if example else [], item.inputs())
            with engine._checkout(prompt) as llama:
                llama.create_completion(prompt=prompt, max_tokens=1, temperature=0.0)  # prompt in the KV cache
                started = time.perf_counter()
                with greedy_grammar(llama, grammar) as sampler:
                    ours = llama.create_completion(prompt=prompt, max_tokens=128, temperature=0.0)
                ours_s = time.perf_counter() - started
                tokens = int(ours["usage"]["completion_tokens"])
                started = time.perf_counter()
                chain = llama.create_completion(prompt=prompt, max_tokens=128, temperature=0.0,
                                                grammar=LlamaGrammar.from_string(grammar, verbose=False))
                chain_s = time.perf_counter() - started
                started = time.perf_counter()
                llama.create_completion(prompt=prompt, max_tokens=tokens, temperature=0.0)
                free_s = time.perf_counter() - started
            per_token["ratchet"].append(1000 * ours_s / tokens)
            per_token["llama-cpp-python"].append(1000 * chain_s / max(1, int(chain["usage"]["completion_tokens"])))
            per_token["free"].append(1000 * free_s / tokens)
            same += ours["choices"][0]["text"] == chain["choices"][0]["text"]
            filtered_steps += sampler.full_filters
            steps += sampler.steps
            progress.advance(task)

    medians = {name: round(statistics.median(values), 2) for name, values in per_token.items()}
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {platform.processor() or '?'} · "
                   f"{_cpus()} CPUs · Python {platform.python_version()}",
        "model": bundle.model_id,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "n": len(test),
        "ms_per_token_median": medians,
        "grammar_overhead_ms_per_token": {
            "llama-cpp-python": round(medians["llama-cpp-python"] - medians["free"], 2),
            "ratchet": round(medians["ratchet"] - medians["free"], 2),
        },
        "same_text": f"{same}/{len(test)}",
        "steps_filtered_over_whole_vocabulary": f"{filtered_steps}/{steps}",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console().print_json(data=result)


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
