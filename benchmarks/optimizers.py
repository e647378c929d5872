"""Real DSPy optimizers on the embedded model, side by side: auto, LabeledFewShot, BootstrapFewShot, MIPROv2-light.

    python benchmarks/optimizers.py [--programs classify_intent,extract_booking] [--train 300] [--dev 100]
                                    [--test 200] [--optimizers labeled,bootstrap,mipro] [--budget-minutes N]
                                    [--user-programs benchmarks/user_tasks/programs.py] [--out FILE]

``--programs`` may name the user tasks (``route_account_request``, ``book_table``): the ``--user-programs``
file is loaded like a user's programs module (the ``programs`` setting). ``auto`` gets the model's prompt
budget (how many demos fit) as in ``ratchet optimize``; ``--budget-minutes`` bounds its compile.

For each program: the zero-shot program is the baseline; each optimizer compiles it on
the same seeded sample of the bundled train split (train and dev parts) with Ratchet's
defaults for base models; baseline and every candidate are scored on the same held-out
test examples (a seeded sample of the upstream test split). Reported per optimizer:
held-out score with the paired difference and its bootstrap 95 % interval, wall time,
task-LM / prompt-LM / teacher calls and tokens, the per-example test scores (to pair runs
later) and, for ``auto``, what it tried. DSPy's cache is off. Results go to ``--out``
(default benchmarks/results/optimizers.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import dspy
from rich.console import Console
from rich.table import Table

from ratchet.config import Settings
from ratchet.data.files import load_examples
from ratchet.data.sampling import seeded_sample
from ratchet.evaluation import evaluate_program
from ratchet.lm import build_lms
from ratchet.lm.tokens import prompt_budget
from ratchet.optimize.meter import LMUsageMeter
from ratchet.optimize.optimizers import OptimizeContext, get_optimizer
from ratchet.optimize.run import role_lms
from ratchet.optimize.stats import compare_paired
from ratchet.programs import load_programs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--programs", default="classify_intent,extract_booking")
    parser.add_argument("--optimizers", default="labeled,bootstrap,mipro")
    parser.add_argument("--train", type=int, default=300)
    parser.add_argument("--dev", type=int, default=100)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-minutes", type=float, default=None, help="auto: time limit of its compile")
    parser.add_argument("--no-baseline", action="store_true", help="skip the zero-shot program: each optimizer is "
                        "compared with the first one instead (paired, same test examples)")
    parser.add_argument("--user-programs", default=str(Path(__file__).parent / "user_tasks" / "programs.py"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/optimizers.json"))
    args = parser.parse_args()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    console = Console(stderr=True)
    settings = Settings()
    settings.programs = [*settings.programs, args.user_programs]
    registry = load_programs(settings)
    bundle = build_lms(settings.lm)
    bundle.warm_up()
    roles = role_lms(bundle, base_model=True)
    budget = prompt_budget(bundle)
    rows = []
    started_all = time.perf_counter()
    for name in args.programs.split(","):
        spec = registry.get(name)
        pool = seeded_sample(load_examples(spec.data["train"], spec.schema).examples, args.train + args.dev, args.seed)
        train, dev = pool[: args.train], pool[args.train:]
        test = seeded_sample(load_examples(spec.data["test"], spec.schema).examples, args.test, args.seed)
        evaluate = {"lm": bundle.task, "adapter": bundle.adapter}
        baseline, reference = None, "zero-shot"
        if not args.no_baseline:
            console.print(f"[bold]{name}[/]: zero-shot baseline on {len(test)} test examples")
            baseline_started = time.perf_counter()
            baseline = evaluate_program(spec.build(), test, spec.metric, **evaluate)
            rows.append({"program": name, "optimizer": "none (zero-shot)", "score": baseline.score,
                         "seconds": round(time.perf_counter() - baseline_started, 1), "test_scores": baseline.scores})
        for optimizer in args.optimizers.split(","):
            plugin = get_optimizer(optimizer)
            ctx = OptimizeContext(spec=spec, trainset=train, valset=dev, task_lm=roles["task"],
                                  prompt_lm=roles["prompt"], teacher_lm=roles["teacher"],
                                  reflection_lm=roles["reflection"], base_model=True, seed=args.seed, auto="light",
                                  adapter=bundle.adapter, prompt_budget=budget, budget_minutes=args.budget_minutes)
            meter = LMUsageMeter(roles, prices={bundle.task.model: None})
            console.print(f"[bold]{name}[/]: {optimizer} ({plugin.parameters(ctx)})")
            started = time.perf_counter()
            if args.budget_minutes is not None:
                ctx.deadline = time.monotonic() + 60 * args.budget_minutes
            with dspy.context(lm=roles["task"], adapter=bundle.adapter, callbacks=[meter]):
                candidate = plugin.compile(spec.build(), ctx)
            compile_s = time.perf_counter() - started
            report = evaluate_program(candidate, test, spec.metric, **evaluate)
            if baseline is None:  # --no-baseline: the first optimizer is the reference
                baseline, reference = report, optimizer
            cmp = compare_paired(baseline.scores, report.scores, seed=args.seed)
            usage = meter.summary()
            rows.append({
                "program": name, "optimizer": optimizer, "parameters": plugin.parameters(ctx),
                "lm_calls_total": usage["lm_calls_total"],
                "score": report.score, "baseline": baseline.score, "reference": reference,
                "difference": cmp.mean_difference, "ci_low": cmp.ci_low, "ci_high": cmp.ci_high,
                "p_value": cmp.p_value, "compile_seconds": round(compile_s, 1),
                "eval_seconds_per_call": report.seconds_per_call, "lm_calls": usage["lm_calls"],
                "tokens": usage["tokens"], "parse_failure_rate": report.parse_failure_rate,
                "test_scores": report.scores,
            })
            console.print(f"  → {report.score:.3f} (baseline {baseline.score:.3f}) in {compile_s:.0f} s, "
                          f"calls {usage['lm_calls']}")
            if "winner" in rows[-1]["parameters"]:
                console.print(f"  winner: {rows[-1]['parameters']['winner']}")
            _write(args, bundle, rows, started_all)
    _write(args, bundle, rows, started_all)
    table = Table(title=f"{bundle.model_id}: held-out test, {args.test} examples per program")
    for column in ("program", "optimizer", "score", "Δ vs zero-shot [95 % CI]", "compile s", "task / prompt / "
                   "teacher calls"):
        table.add_column(column, justify="left" if column in ("program", "optimizer") else "right")
    for r in rows:
        if "difference" not in r:
            table.add_row(r["program"], r["optimizer"], f"{r['score']:.3f}", "", "", "")
            continue
        calls = r["lm_calls"]
        interval = f"{r['difference']:+.3f} [{r['ci_low']:+.3f}, {r['ci_high']:+.3f}]"
        table.add_row(r["program"], r["optimizer"], f"{r['score']:.3f}", interval, f"{r['compile_seconds']:.0f}",
                      f"{calls.get('task', 0)} / {calls.get('prompt', 0)} / {calls.get('teacher', 0)}")
    Console().print(table)


def _write(args: argparse.Namespace, bundle: Any, rows: list[dict[str, Any]], started_all: float) -> None:
    """The results so far (after every optimizer, so a long run that stops keeps what it measured)."""
    result = {
        "machine": f"{platform.node()} · {platform.machine()} · {os.cpu_count()} CPUs · "
                   f"Python {platform.python_version()}",
        "model": bundle.model_id,
        "n_threads": os.environ.get("RATCHET_LM__LOCAL__N_THREADS", "0 (all cores)"),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "sizes": {"train": args.train, "dev": args.dev, "test": args.test},
        "seconds": round(time.perf_counter() - started_all, 1),
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
