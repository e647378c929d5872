"""``ratchet collect telemetry | git | synthetic``: gather training examples from one source."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json, progress_bar
from ratchet.cli.state import get_state
from ratchet.data.collect import (
    REPORT_NAME,
    CollectionReport,
    Collector,
    GitCollector,
    SyntheticCollector,
    TelemetryCollector,
    expand_log_paths,
    load_seed_examples,
    parse_since,
)
from ratchet.errors import DataError
from ratchet.telemetry.writer import iter_log_files

app = typer.Typer(help="Collect training examples: telemetry logs, git history, synthetic generation.",
                  no_args_is_help=True)

_OUTPUT_HELP = "directory for <signature>.jsonl and collection_report.json"


def _run(collector: Collector, output: Path, label: str, *, as_json: bool, scale: int = 1) -> CollectionReport:
    with progress_bar(enabled=not as_json) as progress:
        task = progress.add_task(label, total=None, status="")

        def update(done: int, total: int | None, status: str) -> None:
            progress.update(task, completed=math.ceil(done / scale),
                            total=None if total is None else max(1, math.ceil(total / scale)), status=status)

        report = collector.collect(output, progress=update)
    if as_json:
        print_json(report.to_dict())
    else:
        _print_summary(report, output)
    return report


def _print_summary(report: CollectionReport, output: Path) -> None:
    style = "bold green" if report.complete and report.collected else "bold yellow"
    console.print(f"[{style}]{report.summary(reasons=False)}[/]", highlight=False)
    table = Table(box=None, show_header=False, padding=(0, 2))
    for signature, n in report.written.items():
        table.add_row(f"[bold]{signature}[/]", str(n), str(output / f"{signature}.jsonl"))
    for reason, n in report.skipped.most_common():
        table.add_row(f"[dim]skipped: {reason}[/]", str(n), "")
    for key in ("malformed_lines", "invalid_records", "unreadable_files", "feedback_unmatched"):
        if report.counts.get(key):
            table.add_row(f"[dim]{key.replace('_', ' ')}[/]", str(report.counts[key]), "")
    console.print(table)
    if report.stopped:
        console.print(f"[dim]stopped: {report.stopped}[/]", highlight=False)
    for hint in report.hints:
        console.print(f"[yellow]hint:[/] {hint}", highlight=False)
    for error in report.errors[:3]:
        console.print(f"[dim]  {error}[/]", highlight=False)
    console.print(f"[dim]{output / REPORT_NAME} · {report.seconds:.1f} s[/]")


@app.command("telemetry")
def telemetry(
    ctx: typer.Context,
    files: list[str] = typer.Argument(None, metavar="[LOG_FILE]...", help="more log files (shell-expanded globs)",
                                      show_default=False),
    log_files: list[str] = typer.Option([], "--log-file", help="a JSON Lines log, plain or .gz; globs and "
                                        "directories too (repeatable); default: every file of <home>/telemetry/"),
    output: Path = typer.Option(..., "--output", "--output-dir", "-o", help=_OUTPUT_HELP),
    signature: str | None = typer.Option(None, "--signature", "-s", help="only this program (default: every "
                                         "registered signature in the logs)"),
    min_quality_score: float = typer.Option(0.70, "--min-quality-score", min=0.0, max=1.0,
                                            help="feedback score needed to use the program's output as the label"),
    max_latency_ms: float = typer.Option(5000.0, "--max-latency-ms", min=0.0, help="skip slower calls"),
    max_cost_usd: float = typer.Option(0.10, "--max-cost-usd", min=0.0, help="skip more expensive calls"),
    since: str | None = typer.Option(None, "--since", help="only calls after this ISO date/time, or N days ago"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Turn logged calls with good feedback into labelled examples (deduplicated by input)."""
    from ratchet.telemetry.database import telemetry_view

    state = get_state(ctx)
    patterns = [*log_files, *(files or [])]
    with contextlib.ExitStack() as stack:
        if patterns:
            paths = expand_log_paths(patterns)
        else:  # with the shared (PostgreSQL) sink: every host's records, in a temporary directory
            directory = stack.enter_context(telemetry_view(state.settings))
            paths = iter_log_files(directory)
            if not paths:
                raise DataError(f"no telemetry logs in {directory} (is telemetry enabled and sampling calls?); "
                                "pass --log-file")
        collector = TelemetryCollector(paths, state.registry, signature=signature,
                                       min_quality_score=min_quality_score, max_latency_ms=max_latency_ms,
                                       max_cost_usd=max_cost_usd, since=parse_since(since),
                                       max_feedback_per_key=state.settings.data.max_feedback_per_key)
        _run(collector, output, "reading logs (kB)", as_json=as_json, scale=1000)


@app.command("git")
def git(
    ctx: typer.Context,
    repo_path: Path = typer.Option(Path("."), "--repo-path", help="the repository to mine"),
    since_days: float = typer.Option(90.0, "--since-days", min=0.0, help="how far back to look (0: all history)"),
    target: int = typer.Option(30, "--target", min=1, help="stop after this many examples"),
    output: Path = typer.Option(..., "--output", "-o", help=_OUTPUT_HELP),
    signature: str = typer.Option("classify_commit", "--signature", "-s", help="program whose git mapper to use"),
    exclude_merges: bool = typer.Option(True, "--exclude-merge-commits/--include-merge-commits",
                                        help="skip merge commits"),
    min_message_length: int = typer.Option(10, "--min-commit-message-length", min=0,
                                           help="skip commits whose message is shorter"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Mine commits, newest first, into examples through the signature's git mapper."""
    state = get_state(ctx)
    collector = GitCollector(repo_path, state.registry, signature=signature, target=target,
                             since_days=since_days or None,
                             include_merges=not exclude_merges, min_message_length=min_message_length)
    _run(collector, output, f"git {signature}", as_json=as_json)


@app.command("synthetic")
def synthetic(
    ctx: typer.Context,
    signature: str = typer.Option(..., "--signature", "-s", help="the program to write examples for"),
    target: int = typer.Option(..., "--target", min=1, help="examples to generate"),
    output: Path = typer.Option(..., "--output", "-o", help=_OUTPUT_HELP),
    seed: int = typer.Option(0, "--seed", help="seed for hints, demos and sampling"),
    seed_examples: Path | None = typer.Option(None, "--seed-examples", help="real examples to imitate (default: "
                                              "the bundled train data, else the latest dataset)"),
    demos: int = typer.Option(8, "--demos", min=1, help="real examples shown per generation"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
) -> None:
    """Generate new examples with the configured LM, stratified by category and difficulty."""
    state = get_state(ctx)
    spec = state.registry.get(signature)
    seeds, source = load_seed_examples(spec, seed_examples, home=state.settings.home_dir)
    bundle = state.lms()
    collector = SyntheticCollector(spec, bundle, seeds, target=target, seed=seed, demos=demos,
                                   seed_source=str(source))
    bundle.warm_up()
    _run(collector, output, f"synthetic {signature}", as_json=as_json)
