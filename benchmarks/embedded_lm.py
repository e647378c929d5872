"""DSPy's ChatAdapter vs Ratchet's CompletionAdapter on the embedded model, side by side in one run.

    python benchmarks/embedded_lm.py [--n 200] [--shots 0,8] [--programs classify_intent,extract_booking]
                                     [--adapters chat,completion] [--max-tokens 128]
                                     [--out benchmarks/results/embedded_lm.json]

Same model (Gemma 3 270M Q4_K_M, llama.cpp), same held-out test examples (a seeded
sample of the upstream test split), same class-balanced demos from the train split,
same max_tokens; DSPy's cache is off so every call reaches the model. The ChatAdapter
runs as DSPy ships it (falling back to JSONAdapter on a parse failure); the completion
adapter runs as Ratchet configures it for the embedded model (structured answers decoded
under a grammar of their shape). ``--adapters`` may add ``completion-unconstrained``: the
completion adapter without the grammar (``lm.constrain_outputs = false``, as Ratchet ran
before issue 17.2). Reports score, parse-failure rate and median seconds per call.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import dspy
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ratchet.config import Settings
from ratchet.data import balanced_demos, load_examples, seeded_sample
from ratchet.evaluation import attach_demos, evaluate_program
from ratchet.evaluation.fewshot import training_examples
from ratchet.lm import build_lms
from ratchet.lm.adapter import CompletionAdapter
from ratchet.programs import load_programs

console = Console(stderr=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="held-out test examples per program")
    parser.add_argument("--shots", default="0,8", help="comma-separated demo counts")
    parser.add_argument("--programs", default="classify_intent,extract_booking")
    parser.add_argument("--adapters", default="chat,completion",
                        help="comma-separated: chat, completion, completion-unconstrained")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/embedded_lm.json"))
    args = parser.parse_args()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    settings = Settings()
    settings.lm.max_tokens = args.max_tokens
    registry = load_programs(settings)
    bundle = build_lms(settings.lm)
    bundle.warm_up()
    assert isinstance(bundle.adapter, CompletionAdapter)
    choices = {"chat": ("ChatAdapter", dspy.ChatAdapter()), "completion": ("CompletionAdapter", bundle.adapter),
               "completion-unconstrained": ("CompletionAdapter (no grammar)", CompletionAdapter(
                   constrain=False, choice_scoring=bundle.adapter.choice_scoring))}
    unknown = set(args.adapters.split(",")) - set(choices)
    if unknown:
        parser.error(f"--adapters: unknown {', '.join(sorted(unknown))} (choose from {', '.join(choices)})")
    adapters = dict(choices[a] for a in args.adapters.split(","))
    shots = [int(s) for s in args.shots.split(",")]

    rows = []
    started = time.time()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        for name in args.programs.split(","):
            spec = registry.get(name)
            test = seeded_sample(load_examples(spec.data["test"], spec.schema).examples, args.n, args.seed)
            train = training_examples(spec)
            for k in shots:
                demos = balanced_demos(train, k, spec.label_field, args.seed)
                for adapter_name, adapter in adapters.items():
                    module = attach_demos(spec.build(), demos)
                    task = progress.add_task(f"{name} {k}-shot {adapter_name}", total=len(test))
                    report = evaluate_program(module, test, spec.metric, lm=bundle.task, adapter=adapter,
                                              on_result=lambda _r, t=task: progress.advance(t))
                    rows.append({"program": name, "shots": k, "adapter": adapter_name, **report.summary()})

    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {platform.processor() or '?'} · "
                   f"{_cpus()} CPUs · Python {platform.python_version()}",
        "model": bundle.model_id,
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "n": args.n,
        "max_tokens": args.max_tokens,
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "ratios": _ratios(rows),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    _print(result)


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


def _ratios(rows: list[dict]) -> list[dict]:
    """Completion vs chat for each program and shot count: score ratio and speed-up."""
    out = []
    keyed = {(r["program"], r["shots"], r["adapter"]): r for r in rows}
    for (program, shots, adapter), row in keyed.items():
        if adapter != "CompletionAdapter" or (program, shots, "ChatAdapter") not in keyed:
            continue
        chat = keyed[(program, shots, "ChatAdapter")]
        speed = chat["seconds_per_call"] / row["seconds_per_call"] if row["seconds_per_call"] else None
        out.append({
            "program": program,
            "shots": shots,
            "score_ratio": round(row["score"] / chat["score"], 2) if chat["score"] else None,
            "speedup": round(speed, 1) if speed else None,
        })
    return out


def _print(result: dict) -> None:
    table = Table(title=f"{result['model']} · n={result['n']} · max_tokens={result['max_tokens']}")
    for column in ("program", "shots", "adapter", "score", "parse failures", "s/call (median)"):
        table.add_column(column, justify="right" if column not in ("program", "adapter") else "left")
    for r in result["rows"]:
        table.add_row(r["program"], str(r["shots"]), r["adapter"], f"{r['score']:.3f}",
                      f"{r['parse_failure_rate']:.1%}", f"{r['seconds_per_call']:.3f}")
    Console().print(table)
    for ratio in result["ratios"]:
        Console().print(f"{ratio['program']} {ratio['shots']}-shot: completion/chat score × {ratio['score_ratio']}, "
                        f"{ratio['speedup']}× faster per call")


if __name__ == "__main__":
    main()
