"""Differential check of the prompt cache: each choice-scoring pass scored again on a context that held nothing.

    python benchmarks/prompt_cache_differential.py [--calls 60] [--prompt-cache-mb auto|0] [--cache-slots 1]
        [--tolerance 1.0] [--out benchmarks/results/prompt_cache_differential.json]

A seeded mix of ``classify_intent`` calls — zero-shot, 8-shot and 40-shot versions, likelihood and calibrated
choice scoring, held-out inputs — runs through the shared embedded engine configured as given (DSPy's cache
off). Each label-scoring pass (the prompt's and, for calibration, the content-free prompt's) is repeated on a
second engine whose context is emptied first. A pass whose log-probabilities differ by more than
``--tolerance`` nats counts as off; below it is rounding (a prompt evaluated in other batch splits differs by
up to ~0.4 nats on this model). Exit code 1 when any pass is off.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import dspy
import numpy as np

from ratchet.config import Settings
from ratchet.data import balanced_demos, load_examples, seeded_sample
from ratchet.evaluation import attach_demos
from ratchet.evaluation.fewshot import training_examples
from ratchet.lm import CompletionAdapter, LlamaCppEngine, build_lms
from ratchet.lm.engines import llamacpp
from ratchet.lm.engines.choices import score_choices
from ratchet.lm.local_model import local_weights
from ratchet.lm.setup import local_engine
from ratchet.programs import load_programs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=60)
    parser.add_argument("--prompt-cache-mb", default="auto", help="auto (unset: two contexts' worth) or MB; 0 = off")
    parser.add_argument("--cache-slots", type=int, default=1)
    parser.add_argument("--tolerance", type=float, default=1.0, help="nats")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prompt_cache_differential.json"))
    args = parser.parse_args()

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    settings = Settings()
    settings.lm.local.prompt_cache_mb = None if args.prompt_cache_mb == "auto" else int(args.prompt_cache_mb)
    settings.lm.local.cache_slots = args.cache_slots
    bundle = build_lms(settings.lm)
    bundle.warm_up()
    engine = local_engine(settings.lm.local)
    weights = local_weights(settings.lm.local.model_path)
    reference = LlamaCppEngine(weights.path, model_id=weights.model_id, n_ctx=settings.lm.local.n_ctx,
                               n_threads=settings.lm.local.n_threads, prompt_cache_bytes=0, self_test=False)
    differences: list[float] = []

    def checked(llama, prompt_tokens, options):
        scores = score_choices(llama, prompt_tokens, options)
        with reference._checkout() as fresh:
            fresh._ctx.kv_cache_seq_rm(-1, 0, -1)
            fresh.n_tokens = 0
            expected = score_choices(fresh, prompt_tokens, options)
        differences.append(float(np.max(np.abs(np.array(scores) - np.array(expected)))))
        return scores

    llamacpp.score_choices = checked  # the engine's choice scoring, checked (this process only)
    spec = load_programs(settings).get("classify_intent")
    train = training_examples(spec)
    test = seeded_sample(load_examples(spec.data["test"], spec.schema).examples, 40, args.seed)
    versions = [attach_demos(spec.build(), balanced_demos(train, k, spec.label_field, args.seed + k))
                for k in (0, 8, 40)]
    rng = random.Random(args.seed)
    for _ in range(args.calls):
        mode = rng.choice(["likelihood", "calibrated"])
        with dspy.context(lm=bundle.task, adapter=CompletionAdapter(choice_scoring=mode)):
            rng.choice(versions)(**rng.choice(test).inputs())

    off = [d for d in differences if d > args.tolerance]
    result = {"command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
              "prompt_cache_mb": args.prompt_cache_mb, "cache_slots": args.cache_slots, "calls": args.calls,
              "passes_checked": len(differences), "passes_off": len(off), "tolerance_nats": args.tolerance,
              "max_difference_nats": round(max(differences, default=0.0), 3),
              "median_difference_nats": round(float(np.median(differences)) if differences else 0.0, 4),
              "engine_cache": engine.cache_stats, "snapshots": engine._prompts.stats() if engine._prompts else None}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 1 if off else 0


if __name__ == "__main__":
    sys.exit(main())
