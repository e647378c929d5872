"""``ratchet cycle``: the monthly optimization cycle for every (or some) signature(s)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, print_json, progress_bar
from ratchet.cli.state import get_state
from ratchet.loop.cycle import PHASES, CycleOptions


def cycle(
    ctx: typer.Context,
    signatures: str | None = typer.Option(None, "--signatures", help="comma-separated (default: all registered)"),
    git_target: int = typer.Option(30, "--git-target", min=0),
    synthetic_target: int = typer.Option(20, "--synthetic-target", min=0),
    telemetry_target: int | None = typer.Option(None, "--telemetry-target", min=0,
                                                help="cap on telemetry examples (default: all usable)"),
    trials: int | None = typer.Option(50, "--trials", min=1, help="optimizer trials (MIPROv2; with auto, at most "
                                                                  "this many instruction trials)"),
    optimizer: str | None = typer.Option(None, "--optimizer", help="default: optimize.optimizer (auto)"),
    budget_minutes: float | None = typer.Option(None, "--budget-minutes", min=0.1,
                                                help="time limit of each signature's optimization "
                                                     "(default: optimize.budget_minutes)"),
    min_improvement: float = typer.Option(5.0, "--min-improvement", help="percent over production to deploy"),
    output_dir: Path | None = typer.Option(None, "--output-dir", help="default: <home>/runs"),
    repo_path: Path = typer.Option(Path("."), "--repo-path", help="git repository to mine"),
    since_days: int = typer.Option(90, "--since-days", min=0),
    strict: bool = typer.Option(True, "--strict/--no-strict", help="failed quality gates stop a signature"),
    dry_run: bool = typer.Option(False, "--dry-run", help="no dataset version, no program version, no rollout"),
    seed: int = typer.Option(0, "--seed"),
    trigger: str | None = typer.Option(None, "--trigger", help="why this cycle runs (the controller's live "
                                                                "triggers set it; recorded in the summary)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Collect, validate, gate, version, optimize, evaluate and decide — for each signature."""
    from ratchet.loop.cycle import run_cycle

    state = get_state(ctx)
    options = CycleOptions(
        signatures=[s.strip() for s in signatures.split(",") if s.strip()] if signatures else None,
        git_target=git_target, synthetic_target=synthetic_target, telemetry_target=telemetry_target, trials=trials,
        optimizer=optimizer, budget_minutes=budget_minutes, min_improvement=min_improvement, output_dir=output_dir,
        repo_path=repo_path,
        since_days=since_days, strict=strict, dry_run=dry_run, seed=seed, trigger=trigger,
    )
    with progress_bar(enabled=not as_json) as progress:
        tasks: dict[str, Any] = {}

        def report(signature: str, phase: str, status: str) -> None:
            if signature not in tasks:
                tasks[signature] = progress.add_task(signature, total=len(PHASES), status="")
            step = PHASES.index(phase) + (1 if status in ("ok", "failed", "timeout", "skipped") else 0)
            if phase == "optimize" and status == "ok":
                step = PHASES.index("evaluate") + 1
            progress.update(tasks[signature], completed=step, status=f"{phase}: {status}")

        summary = run_cycle(state.settings, state.registry, options, report=report)
    if as_json:
        print_json(summary)
    else:
        print_cycle(summary)
    raise typer.Exit(0 if summary["success"] else 1)


def print_cycle(summary: dict[str, Any]) -> None:
    """A readable account of a cycle run."""
    table = Table(title=f"{summary['run_id']}{' (dry run)' if summary['dry_run'] else ''}", title_justify="left")
    for column in ("signature", *PHASES, "baseline → candidate", "decision"):
        table.add_column(column, overflow="fold")
    marks = {"ok": "[green]✓[/]", "failed": "[red]✗[/]", "timeout": "[red]⏱[/]", "skipped": "[dim]–[/]"}
    for name, s in summary["signatures"].items():
        phases = [marks.get(s["phases"].get(p, {}).get("status"), "?") for p in PHASES]
        scores = ""
        if s.get("candidate_score") is not None:
            scores = f"{s['baseline_score']:.3f} → {s['candidate_score']:.3f}"
        decision = s.get("phases", {}).get("decide", {})
        verdict = ("deploy" + (f" ({s['experiment_id']})" if s.get("experiment_id") else "")
                   if decision.get("deploy") else "keep baseline" if decision.get("status") == "ok" else "")
        table.add_row(name, *phases, scores, verdict)
    console.print(table)
    for name, s in summary["signatures"].items():
        for error in s["errors"]:
            console.print(f"[red]{name}[/] {error}", highlight=False)
        evaluation = s["phases"].get("evaluate", {}).get("result")
        if evaluation:
            cmp = evaluation["comparison"]
            console.print(
                f"[bold]{name}[/] held-out test ({cmp['n']} examples): baseline {evaluation['baseline_version']} "
                f"{cmp['baseline_mean']:.3f}, candidate {s.get('candidate_version') or '(not stored)'} "
                f"{cmp['candidate_mean']:.3f}; difference {cmp['mean_difference']:+.3f} "
                f"[{cmp['ci_low']:+.3f}, {cmp['ci_high']:+.3f}] ({cmp.get('confidence', 0.95):.0%} paired bootstrap), "
                f"p = {cmp['p_value']:.4f} "
                f"({cmp['test']})", highlight=False)
        if s.get("decision"):
            console.print(f"[bold]{name}[/]: {s['decision']['reason']}", highlight=False)
            if s["decision"].get("golden"):
                worse = (s.get("golden") or {}).get("worse")
                console.print(f"[bold]{name}[/] {'[yellow]' if worse else ''}{escape(s['decision']['golden'])}"
                              f"{'[/]' if worse else ''}", highlight=False)
    console.print(f"summary: {summary['output_dir']}/orchestration_summary.json · "
                  f"{'[green]success[/]' if summary['success'] else '[red]failed[/]'} · {summary.get('seconds')} s")
