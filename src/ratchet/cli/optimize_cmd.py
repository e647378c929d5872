"""``ratchet optimize``: one real DSPy optimization, compared with production on held-out data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import captured_output, console, print_json, progress_bar
from ratchet.cli.state import get_state
from ratchet.optimize.optimizers import OPTIMIZERS


def optimize(
    ctx: typer.Context,
    signature: str = typer.Option(..., "--signature", help="registered signature to optimize"),
    dataset_version: str = typer.Option("latest", "--dataset-version"),
    optimizer: str | None = typer.Option(None, "--optimizer", help=" | ".join(OPTIMIZERS)
                                         + " (default: optimize.optimizer, auto)"),
    budget_minutes: float | None = typer.Option(
        None, "--budget-minutes", min=0.1, help="time limit of the optimization (default: optimize.budget_minutes)"),
    auto: str = typer.Option("light", "--auto", help="light | medium | heavy (MIPROv2, GEPA)"),
    trials: int | None = typer.Option(None, "--trials", min=1, help="explicit trial budget instead of --auto"),
    min_improvement: float = typer.Option(5.0, "--min-improvement", help="percent over production to deploy"),
    seed: int = typer.Option(0, "--seed"),
    threads: int | None = typer.Option(None, "--threads", min=1, help="default: 1 for the embedded model, else 8"),
    save: bool = typer.Option(True, "--save/--no-save", help="register the candidate as a program version"),
    output: Path | None = typer.Option(None, "--output", help="write the full report (JSON) here"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Optimize a program on its dataset's train split; evaluate it against production on the test split."""
    from ratchet.optimize.run import run_optimization

    if auto not in ("light", "medium", "heavy"):
        raise typer.BadParameter("--auto must be light, medium or heavy")
    if optimizer is not None and optimizer not in OPTIMIZERS:
        raise typer.BadParameter(f"--optimizer must be one of {', '.join(OPTIMIZERS)}")
    state = get_state(ctx)
    optimizer = optimizer or state.settings.optimize.optimizer
    bundle = state.lms()
    with progress_bar(enabled=not as_json) as progress:
        tasks: dict[str, Any] = {}

        def report(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                label = f"{optimizer} LM calls" if phase == "optimize" else "paired evaluation"
                tasks[phase] = progress.add_task(label, total=total, status="")
            progress.update(tasks[phase], completed=done, total=max(total, done))

        stamp = datetime.now(UTC).strftime("%Y%m%d_%H%M%S")
        log_path = state.settings.home_dir / "logs" / f"optimize_{signature}_{stamp}.log"
        with captured_output(log_path):
            result = run_optimization(state.settings, state.registry, signature, dataset_version=dataset_version,
                                      optimizer=optimizer, auto=auto, trials=trials, seed=seed,
                                      min_improvement=min_improvement, save_candidate=save, lms=bundle,
                                      num_threads=threads, progress=report, budget_minutes=budget_minutes)
    data = result.to_dict()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(data, indent=2) + "\n")
    if as_json:
        print_json(data)
        return
    print_optimization(data)
    print_search(data["parameters"])
    console.print(f"[dim]optimizer output: {log_path}[/]", highlight=False)


def print_optimization(data: dict[str, Any]) -> None:
    """A readable summary of an optimization report."""
    cmp, usage = data["comparison"], data["usage"]
    table = Table(title=f"{data['signature']}: {data['optimizer']} on dataset {data['dataset_version']} "
                        f"(train {data['sizes']['train']}, dev {data['sizes']['dev']}, test {data['sizes']['test']}"
                        + (f"; {data['excluded_golden']} golden inputs left out" if data.get("excluded_golden")
                           else "") + ")",
                  title_justify="left", box=None)
    table.add_column("")
    table.add_column("", justify="right")
    table.add_row(f"baseline ({data['baseline_version']}) test score", f"{cmp['baseline_mean']:.3f}")
    table.add_row(f"candidate ({data['candidate_version'] or 'not saved'}) test score", f"{cmp['candidate_mean']:.3f}")
    table.add_row("difference [95 % interval]",
                  f"{cmp['mean_difference']:+.3f} [{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}]")
    relative = cmp["relative_improvement_percent"]
    table.add_row("relative improvement", "n/a (baseline 0)" if relative is None else f"{relative:+.1f} %")
    table.add_row(f"p-value ({cmp['test']})", f"{cmp['p_value']:.4f}")
    table.add_row("wins / losses / ties", f"{cmp['wins']} / {cmp['losses']} / {cmp['ties']}")
    golden = data.get("golden")
    if golden:
        gcmp = golden["comparison"]
        table.add_row(f"golden set {golden['golden_version']} ({golden['n']}): baseline → candidate",
                      f"{gcmp['baseline_mean']:.3f} → {gcmp['candidate_mean']:.3f} "
                      f"[{gcmp['ci_low']:+.3f}, {gcmp['ci_high']:+.3f}]"
                      + (" [yellow]worse[/]" if golden["worse"] else ""))
    calls = ", ".join(f"{role} {n}" for role, n in sorted(usage["lm_calls"].items())) or "none"
    table.add_row("LM calls", calls)
    table.add_row("tokens in / out", f"{usage['tokens']['input']} / {usage['tokens']['output']}")
    table.add_row("estimated cost", "unknown" if usage["cost_usd"] is None else f"${usage['cost_usd']:.4f}")
    seconds = data["seconds"]
    table.add_row("seconds (optimize / evaluate)", f"{seconds['optimize']:.1f} / {seconds['evaluate']:.1f}")
    console.print(table)
    verdict = "[bold green]DEPLOY[/]" if data["decision"]["deploy"] else "[bold yellow]KEEP BASELINE[/]"
    console.print(f"{verdict}: {data['decision']['reason']}")
    if golden:
        console.print(f"[dim]{golden['verdict']}[/]", highlight=False)


def print_search(params: dict[str, Any]) -> None:
    """What the ``auto`` optimizer tried on the dev split — each candidate, its score and cost — and what won."""
    search = params.get("demo_search")
    if not search:
        return
    table = Table(title=f"demo search on dev (rungs of {', '.join(map(str, search['rungs_dev_examples']))} examples; "
                        f"at most {search['max_demos_that_fit']} demos fit)", title_justify="left", box=None)
    for column in ("candidate", "prompt tokens", "dev examples", "dev score", "calls", "seconds"):
        table.add_column(column, justify="left" if column == "candidate" else "right")
    for c in search["candidates"]:
        mark = " [green]✓[/]" if c["candidate"] == search["winner"] else ""
        table.add_row(c["candidate"] + mark, str(c["prompt_tokens"] or "?"), str(c["dev_examples"]),
                      f"{c['dev_score']:.3f}", str(c["calls"]), f"{c['seconds']:.1f}")
    console.print(table)
    if search.get("stopped"):
        console.print(f"[yellow]demo search stopped early: {search['stopped']}[/]", highlight=False)
    challenge = search.get("incumbent_challenge") or {}
    if challenge:
        console.print(f"search winner {search.get('search_winner')} against the incumbent: {challenge['reason']}",
                      highlight=False)
    instr = params.get("instruction_search") or {}
    if instr:
        console.print(f"instruction search (MIPROv2, instructions only): {instr['status']} — {instr['reason']}"
                      + (f" ({instr['trials']} trials, {instr['seconds']:.0f} s)" if instr.get("trials") else ""),
                      highlight=False)
    console.print(f"[bold]winner[/]: {params['winner']}", highlight=False)
