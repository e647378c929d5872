"""``ratchet flywheel``: the weekly human flywheel. Phase 1 triages the week's failures into clusters and queues
annotation tasks; phase 2 (``--continue``) imports the answers and writes the weekly report.

Exit codes of ``flywheel run``: 0 the report was written (also for a week without failures or annotations);
2 a bad week, a missing or unreadable report, or a configuration error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, fail, print_json, progress_bar
from ratchet.cli.state import CliState, get_state

if TYPE_CHECKING:
    from ratchet.flywheel.week import IsoWeek

app = typer.Typer(help="The human flywheel: weekly failure triage (phase 1) and the import of annotations (phase 2).",
                  no_args_is_help=True)

_BAR_WIDTH = 20


@app.command("run")
def run(
    ctx: typer.Context,
    week: str = typer.Option(..., "--week", help="ISO week to triage, e.g. 2026-W48 (UTC, Monday to Sunday), or "
                                                     "last: the last complete week (what the weekly job runs)"),
    signature: str | None = typer.Option(None, "--signature", "-s", help="one signature (default: all); "
                                         "the week's report keeps the others"),
    score_threshold: float = typer.Option(0.5, "--score-threshold", min=0.0, max=1.0,
                                          help="feedback scoring under this is a failure"),
    distance: float | None = typer.Option(None, "--distance", min=0.01, max=1.0,
                                          help="cosine distance under which clusters merge (default 0.85)"),
    double_share: float = typer.Option(0.1, "--double-share", min=0.0, max=1.0,
                                       help="share of new annotation tasks that go to two annotators (agreement)"),
    continue_: bool = typer.Option(False, "--continue", help="phase 2: import the week's answered annotation "
                                   "tasks (golden set or training data) and write reports/weekly_<week>"),
    both: bool = typer.Option(False, "--both", help="phase 1, then phase 2 (what the weekly job runs: the answers "
                              "given since the last run are imported, late ones of earlier weeks included)"),
    golden_share: float | None = typer.Option(None, "--golden-share", min=0.0, max=1.0,
                                              help="phase 2: share of annotated cases for the golden set, the rest "
                                                   "for training (default: flywheel.golden_share, 0.5)"),
    evaluate: bool = typer.Option(False, "--eval", help="phase 2: score production and live candidates on the grown "
                                  "golden sets now (`ratchet eval-regression`); else the report shows the newest "
                                  "daily evaluation"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output (the report, and the tasks queued)"),
) -> None:
    """Phase 1: collect the week's failures, cluster them, compare with last week, write reports/triage_<week>,
    and queue an annotation task per clustered failure (representatives first; `ratchet annotate next`).
    With --continue, phase 2: import the answers and write reports/weekly_<week>; --both runs one, then the other."""
    from ratchet.flywheel import TriageOptions, parse_week, queue_tasks, run_triage
    from ratchet.flywheel.cluster import DEFAULT_DISTANCE
    from ratchet.store.db import StateDB
    from ratchet.telemetry.database import telemetry_view

    iso_week = parse_week(week)
    state = get_state(ctx)
    settings = state.settings
    if signature is not None and signature not in state.registry:  # a typo would write an empty section
        fail(f"unknown signature {signature!r}; registered: {', '.join(state.registry.names()) or 'none'}")
    if continue_ and both:
        fail("give --continue (phase 2) or --both (phase 1, then phase 2), not both")
    share = settings.flywheel.golden_share if golden_share is None else golden_share
    if continue_:
        weekly = _phase2(state, iso_week, signature=signature, golden_share=share, double_share=double_share,
                         as_json=as_json, evaluate=evaluate)
        if as_json:
            print_json(weekly)
        return
    options = TriageOptions(score_threshold=score_threshold, signature=signature,
                            distance_threshold=DEFAULT_DISTANCE if distance is None else distance,
                            lookback_days=settings.serve.request_index_days)
    db = StateDB.connect(settings)
    try:
        with progress_bar(transient=True, enabled=not as_json) as progress, telemetry_view(settings, db) as logs:
            task = progress.add_task(f"triage {iso_week}", total=None, status="")
            report, md_path, json_path = run_triage(
                settings.home_dir, db, iso_week, options, telemetry_dir=logs,
                on_step=lambda message: progress.update(task, status=escape(message)))
            progress.update(task, status="queueing annotation tasks")
            queued = queue_tasks(db, report, double_share=double_share)
    finally:
        db.dispose()
    if as_json:
        triage = {**report, "annotation_tasks": queued}
        if both:
            weekly = _phase2(state, iso_week, signature=signature, golden_share=share, double_share=double_share,
                             as_json=True, evaluate=evaluate)
            print_json({"triage": triage, "weekly": weekly})
        else:
            print_json(triage)
        return
    _print_summary(report)
    console.print(f"\nwrote {escape(str(md_path))}\n  and {escape(str(json_path))}", highlight=False)
    created = sum(q["created"] for q in queued.values())
    existing = sum(q["existing"] for q in queued.values())
    console.print(f"annotation tasks: {created} queued ({existing} already were); next: `ratchet annotate next`",
                  highlight=False)
    if both:
        console.print()
        _phase2(state, iso_week, signature=signature, golden_share=share, double_share=double_share, as_json=False,
                evaluate=evaluate)


def _phase2(state: CliState, week: IsoWeek, *, signature: str | None, golden_share: float, double_share: float,
            as_json: bool, evaluate: bool = False) -> dict[str, Any]:
    """Run phase 2; print its summary unless ``as_json``; return the weekly report."""
    from ratchet.flywheel import run_phase2
    from ratchet.flywheel.regression import run_eval_regression
    from ratchet.store.db import StateDB

    db = StateDB.connect(state.settings)
    scorer = (lambda: run_eval_regression(state.settings, state.registry, db, signature)) if evaluate else None
    try:
        with progress_bar(transient=True, enabled=not as_json) as progress:
            task = progress.add_task(f"weekly flywheel {week}, phase 2", total=None, status="")
            report, md_path, json_path = run_phase2(
                state.settings, state.registry, db, week, signature=signature, golden_share=golden_share,
                double_share=double_share, evaluate=scorer,
                on_step=lambda message: progress.update(task, status=escape(message)))
    finally:
        db.dispose()
    if not as_json:
        _print_phase2(report)
        console.print(f"\nwrote {escape(str(md_path))}\n  and {escape(str(json_path))}", highlight=False)
    return report


def _print_phase2(report: dict[str, Any]) -> None:
    totals = report["totals"]
    console.print(f"[bold]weekly flywheel {report['week']}, phase 2[/]", highlight=False)
    if not totals["annotated"]:
        console.print("no answered annotation tasks to import (`ratchet annotate stats` shows the queue)",
                      highlight=False)
    table = Table(box=None, pad_edge=False)
    for column in ("signature", "accepted", "corrected", "rejected", "conflicts", "golden", "training"):
        table.add_column(column, justify="left" if column == "signature" else "right")
    for name, sig in report["signatures"].items():
        part = sig.get("import")
        if not part:
            continue
        golden, training = part["golden"], part["training"]
        table.add_row(escape(name), str(part["accepted"]), str(part["corrected"]), str(part["rejected"]),
                      str(part["conflicts"]), f"{golden['before']} → {golden['after']}", f"+{training['added']}")
    if table.rows:
        console.print(table)
    for name, count in report["unregistered"].items():
        console.print(f"[yellow]{count} answered task(s) of {escape(name)} left alone: the signature is not "
                      "registered[/]", highlight=False)
    for name, result in (report.get("evaluation") or {}).items():
        if result is None:
            console.print(f"{escape(name)}: no golden-set evaluation yet (`ratchet eval-regression`)", highlight=False)
            continue
        scores = ", ".join(f"{v['version']} {v['score']:.3f}" for v in result["versions"] if v.get("score") is not None)
        verdict = "[red]regression[/]" if result["regression"] else "no regression"
        console.print(f"{escape(name)}: golden {result['golden_version']} ({result['golden_size']}) scored "
                      f"{escape(scores) or '–'} on {result['run_at']}: {verdict}", highlight=False)
    for backlog in report["queue"].get("backlog", []):
        waiting = backlog["open"] + backlog["leased"]
        if waiting:
            console.print(f"{escape(backlog['signature'])}: {waiting} task(s) still waiting for annotation",
                          highlight=False)


def _print_summary(report: dict[str, Any]) -> None:
    totals, scan = report["totals"], report["scan"]
    console.print(f"[bold]failure triage {report['week']}[/] ({report['start'][:10]} to {report['end'][:10]} UTC)",
                  highlight=False)
    skipped = scan["malformed_lines"] + scan["invalid_records"]
    if skipped:
        console.print(f"[yellow]skipped {scan['malformed_lines']} malformed lines and {scan['invalid_records']} "
                      "invalid records in telemetry[/]", highlight=False)
    if not totals["failures"] and not totals["low_canary_runs"]:
        console.print("no failures this week: nothing to triage", highlight=False)
        if not report["signatures"]:
            return
    compared = "vs " + report["previous_week"] if report["previous_report"] else "no report for last week"
    console.print(f"{totals['failures']} failures, {totals['clusters']} clusters ({totals['new_clusters']} new, "
                  f"{totals['recurring_clusters']} recurring; {compared})", highlight=False)
    table = Table(box=None, pad_edge=False)
    for column in ("signature", "failures", "last week", "clusters", "failure types"):
        table.add_column(column, justify="right" if column in ("failures", "last week", "clusters") else "left")
    for name, sig in report["signatures"].items():
        types = ", ".join(f"{k} {v['this_week']}" + ("" if v["last_week"] is None else f" ({v['last_week']})")
                          for k, v in sig["failure_type_change"].items())
        last = "–" if sig["previous_failures"] is None else str(sig["previous_failures"])
        table.add_row(escape(name), str(sig["failures"]), last, str(len(sig["clusters"])), escape(types))
    console.print(table)
    _print_bars(report)


def _print_bars(report: dict[str, Any], limit: int = 10) -> None:
    """A bar per cluster (the largest ``limit`` by priority), sized by its share of the largest."""
    queue = report["queue"][:limit]
    if not queue:
        return
    clusters = {c["id"]: c for sig in report["signatures"].values() for c in sig["clusters"]}
    largest = max(q["size"] for q in queue)
    console.print("\n[bold]clusters[/] (by priority)", highlight=False)
    for q in queue:
        cluster = clusters[q["cluster"]]
        width = max(1, round(_BAR_WIDTH * q["size"] / largest))
        colour = "magenta" if q["status"] == "new" else "cyan"
        terms = escape(", ".join(cluster["terms"][:3]) or "(no terms)")
        console.print(f"  {escape(q['signature']):<16.16} [{colour}]{'█' * width:<{_BAR_WIDTH}}[/] "
                      f"{q['size']:>4} {q['status']:<9} {terms}", highlight=False, overflow="ellipsis", no_wrap=True)
    if len(report["queue"]) > limit:
        console.print(f"  … and {len(report['queue']) - limit} more clusters in the report", highlight=False)
