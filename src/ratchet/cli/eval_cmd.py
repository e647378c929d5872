"""``ratchet eval-regression``: production and live candidates on each golden set, against the previous run.

Exit codes (for CI and the daily job)::

    0  no significant regression (or no golden set to score)
    1  a version scored significantly worse than its reference on the golden set
    2  bad input or configuration (an unknown signature, a model that cannot run), or a version not scored
"""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json, progress_bar, version_progress
from ratchet.cli.state import get_state

SPARKS = "▁▂▃▄▅▆▇█"
HISTORY_RUNS = 14


def eval_regression(
    ctx: typer.Context,
    signature: str | None = typer.Option(None, "--signature", "-s", help="one signature (default: every one with a "
                                         "golden set)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
    no_dispatch: bool = typer.Option(False, "--no-dispatch", help="send no alert (reports and gauges are still "
                                     "written)"),
) -> None:
    """Score production (and any live candidate) on the golden set, compare with the previous run paired on the
    same examples, write <home>/eval_reports/ and the golden-score gauges, alert on a significant regression.
    Exit code: 0 none, 1 a significant regression, 2 bad input or a version that could not be scored."""
    from ratchet.flywheel.regression import report_history, run_eval_regression
    from ratchet.monitor import AlertDispatcher
    from ratchet.monitor.checks import run_checks
    from ratchet.monitor.checks.golden import newest_reports
    from ratchet.monitor.golden_metrics import write_metrics
    from ratchet.store.db import StateDB

    state = get_state(ctx)
    settings, registry = state.settings, state.registry
    if signature is not None:
        registry.get(signature)  # an unknown name: exit 2 with the registered names
    db = StateDB.connect(settings)
    try:
        with progress_bar(enabled=not as_json) as progress:
            run = run_eval_regression(settings, registry, db, signature, on_progress=version_progress(progress))
    finally:
        db.dispose()
    data = run.to_dict()
    if no_dispatch:
        data["textfile"] = str(write_metrics(settings.home_dir, newest_reports(settings, registry)[0]))
        data["alerts"] = []
    else:
        checks = run_checks(settings, ["golden"], AlertDispatcher.from_settings(settings), registry=registry)
        data["textfile"] = str(settings.home_dir / "metrics" / "ratchet_golden.prom")
        data["alerts"] = [a.to_dict() for a in checks.alerts]
    if as_json:
        print_json(data)
    else:
        _print_run(data, {name: report_history(settings.home_dir, name, limit=HISTORY_RUNS)
                          for name, sig in data["signatures"].items() if sig["status"] == "ran"})
    if data["failed"]:
        raise typer.Exit(2)
    if data["regression"]:
        raise typer.Exit(1)


def _print_run(data: dict[str, Any], history: dict[str, list[dict[str, Any]]]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("signature", "version", "roles", "score", "failed", "change, points (interval)", "verdict"):
        table.add_column(column, overflow="fold", justify="right" if column in ("score", "failed") else "left")
    notes = []
    for name, sig in data["signatures"].items():
        if sig["status"] != "ran":
            style = "red" if sig["status"] == "error" else "dim"
            notes.append(f"[{style}]{escape(name)}: {escape(sig['status'].replace('_', ' '))}: "
                         f"{escape(str(sig['reason']))}[/]")
            continue
        notes.append(f"{escape(name)}: golden set {sig['golden_version']} ({sig['golden_size']} examples)")
        if sig["previous_problem"]:
            notes.append(f"[yellow]{escape(name)}: {escape(sig['previous_problem'])}[/]")
        for v in sig["versions"]:
            if v.get("error"):
                table.add_row(name, v["version"], ", ".join(v["roles"]), f"[red]{escape(v['error'])}[/]", "", "",
                              "[red]not scored[/]")
                continue
            cmp, against = v.get("comparison"), v.get("against") or {}
            change = (f"{cmp['mean_difference'] * 100:+.1f} ({cmp['ci_low'] * 100:+.1f} to "
                      f"{cmp['ci_high'] * 100:+.1f}), n {cmp['n']}" if cmp else "–")
            verdict = ("[bold red]REGRESSION[/]" if v["regression"] else "[green]held[/]" if cmp
                       else "[dim]first run[/]")
            failed = v["parse_failures"] + v["errors"]
            table.add_row(name, v["version"], ", ".join(v["roles"]), f"{v['score']:.3f}",
                          f"[yellow]{failed}[/]" if failed else "0", change, verdict)
            if against:
                notes.append(f"[dim]{escape(name)} {escape(v['version'])} against {escape(against['version'])}: "
                             f"{escape(against['basis'])}[/]")
        if sig["report"]:
            notes.append(f"[dim]{escape(name)}: report {escape(sig['report'])}[/]")
    if table.row_count:
        console.print(table)
    for name, runs in history.items():
        console.print(f"  {name} production on the golden set, last {len(runs)} run(s): {sparkline(runs)}",
                      highlight=False)
    for line in notes:
        console.print(f"  {line}", highlight=False)
    for alert in data["alerts"]:
        err_console.print(f"[bold red]alert:[/] {escape(alert['title'])}: {escape(alert['message'])}", highlight=False)
    if data.get("textfile"):
        console.print(f"[dim]metrics: {escape(data['textfile'])}[/]", highlight=False)
    if not data["signatures"] or all(s["status"] == "no_golden" for s in data["signatures"].values()):
        console.print("nothing scored: no golden set yet (`ratchet golden add`)")


def sparkline(runs: list[dict[str, Any]]) -> str:
    """Production's golden score over ``runs`` (reports, oldest first) as bars scaled to their range."""
    scores = []
    for report in runs:
        production = next((v for v in report.get("versions") or []
                           if "production" in (v.get("roles") or []) and v.get("score") is not None), None)
        if production is not None:
            scores.append(float(production["score"]))
    if not scores:
        return "–"
    low, high = min(scores), max(scores)
    span = high - low
    bars = "".join(SPARKS[-1] if span == 0 else SPARKS[round((s - low) / span * (len(SPARKS) - 1))] for s in scores)
    return f"{bars}  {scores[-1]:.3f} (range {low:.3f}–{high:.3f})"
