"""``ratchet golden``: the golden datasets — add (seed from a labelled file), stats, coverage against live traffic."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state
from ratchet.data.golden import GoldenCoverage, GoldenStore, golden_coverage, golden_stats
from ratchet.data.golden.store import GoldenExample
from ratchet.errors import DataError
from ratchet.store.jsonl import JsonlReadStats, iter_jsonl

app = typer.Typer(help="Golden datasets: curated examples training never reads; stats and coverage of traffic.",
                  no_args_is_help=True)

_SIGNATURE = typer.Option(None, "--signature", "-s", help="one registered signature (default: every one)")
_JSON = typer.Option(False, "--json", help="machine-readable output")
BAR_WIDTH = 16


def _store(ctx: typer.Context) -> GoldenStore:
    state = get_state(ctx)
    return GoldenStore(state.settings.home_dir, state.settings.data, registry=state.registry)


def _signatures(ctx: typer.Context, signature: str | None) -> list[str]:
    registry = get_state(ctx).registry
    if signature is not None:
        registry.get(signature)  # an unknown name is a clear error
        return [signature]
    return registry.names()


@app.command("add")
def add(
    ctx: typer.Context,
    signature: str = typer.Option(..., "--signature", "-s", help="registered signature name"),
    file: Path = typer.Option(..., "--file", "-f", help="labelled examples, JSON Lines (fields + optional _meta)"),
    source: str = typer.Option("file", "--source", help="where the labels come from (file, annotation, …)"),
    note: str = typer.Option("", "--note", help="free text stored in the version's metadata"),
    as_json: bool = _JSON,
) -> None:
    """Add labelled examples to a signature's golden set (all validated; one invalid example stores nothing)."""
    state = get_state(ctx)
    state.registry.get(signature)
    if not file.is_file():
        raise DataError(f"{file}: no such file")
    stats = JsonlReadStats()
    rows = list(iter_jsonl(file, stats))
    if stats.bad_lines:
        raise DataError(f"{file}: {stats.bad_lines} unreadable line(s) ({'; '.join(stats.errors[:3])}); "
                        "nothing stored")
    examples = []
    for number, row in enumerate(rows, start=1):
        try:
            examples.append(GoldenExample.from_json(row, signature, source))
        except ValueError as exc:
            raise DataError(f"{file} example #{number}: {exc}; nothing stored") from None
    if not examples:
        raise DataError(f"{file}: no examples; nothing stored")
    result = _store(ctx).add(signature, [e.to_record(signature) for e in examples], source=source, notes=note)
    if as_json:
        print_json({**result.to_dict(), "given": len(examples), "replaced": len(result.replaced)})
        return
    console.print(f"[bold green]{signature} golden {result.version}[/]: {result.example_count} examples "
                  f"([bold]+{result.added}[/] new, {len(result.replaced)} relabelled)  [dim]{result.path}[/]")


@app.command("stats")
def stats(ctx: typer.Context, signature: str | None = _SIGNATURE, as_json: bool = _JSON) -> None:
    """Size, versions, sources, annotators and label distribution of each golden set."""
    store, registry = _store(ctx), get_state(ctx).registry
    reports = [golden_stats(store, registry.get(name)) for name in _signatures(ctx, signature)]
    if as_json:
        print_json({"golden": reports})
        return
    for report in reports:
        if not report["size"]:
            console.print(f"{report['signature']}: no golden set yet (seed one with `ratchet golden add`)")
            continue
        console.print(f"[bold]{report['signature']}[/]: {report['size']} golden examples, {report['versions']} "
                      f"version(s), latest {report['latest']}  [dim]sources: "
                      + ", ".join(f"{k} {v}" for k, v in report["sources"].items()) + "[/]", highlight=False)
        for dimension, counts in report["labels"].items():
            table = Table(title=f"{report['signature']} · {dimension}", title_justify="left", box=None)
            table.add_column("label")
            table.add_column("golden", justify="right")
            table.add_column("share", justify="right")
            table.add_column("")
            total = sum(counts.values()) or 1
            for label, count in counts.items():
                table.add_row(label, str(count), f"{count / total:.0%}", _bar(count / total, "green"))
            console.print(table)


@app.command("coverage")
def coverage(
    ctx: typer.Context,
    signature: str | None = _SIGNATURE,
    days: float = typer.Option(7.0, "--days", min=0.01, help="traffic window: the last N days of telemetry"),
    min_size: int = typer.Option(100, "--min-size", min=1, help="plan shortfalls for a golden set of at least N"),
    top: int = typer.Option(15, "--top", min=1, help="rows shown per signature"),
    as_json: bool = _JSON,
) -> None:
    """Which labels live traffic predicts that the golden set under-represents, largest gap first."""
    state = get_state(ctx)
    store = _store(ctx)
    from ratchet.telemetry.database import telemetry_view

    with telemetry_view(state.settings) as telemetry:  # every host's records with the shared (PostgreSQL) sink
        reports = [golden_coverage(store, state.registry.get(name), telemetry, since_days=days, min_size=min_size)
                   for name in _signatures(ctx, signature)]
    if as_json:
        print_json({"coverage": [r.to_dict() for r in reports]})
        return
    for report in reports:
        _print_coverage(report, top)


def _print_coverage(report: GoldenCoverage, top: int) -> None:
    head = (f"[bold]{report.signature}[/]: golden {report.golden_version or 'none'} ({report.golden_size} examples) "
            f"vs {report.traffic_calls} served calls in the last {report.since_days:g} days")
    console.print(head, highlight=False)
    if not report.traffic_calls:
        console.print("  [dim]no traffic in the window: nothing to compare (is telemetry sampling on?)[/]")
        return
    gaps = report.gaps
    if not gaps:
        console.print("  [green]no gaps[/]: every label in traffic is at least as common in golden")
        return
    table = Table(title=f"{len(gaps)} under-represented label(s), largest gap first; shortfall for a golden set of "
                        f"{report.target_size}", title_justify="left")
    for column in ("dimension", "label", "traffic", "traffic %", "golden", "golden %", "gap", "shortfall"):
        table.add_column(column, justify="left" if column in ("dimension", "label") else "right",
                         overflow="fold", min_width=len(column) if column != "label" else 12)
    for row in gaps[:top]:
        table.add_row(row.dimension, row.label, str(row.traffic), f"{row.traffic_share:.1%}", str(row.golden),
                      f"{row.golden_share:.1%}", f"{row.gap:+.1%}", str(row.shortfall))
    console.print(table)
    chart = Table(box=None, show_header=False, padding=(0, 1))
    chart.add_column("label", overflow="fold")
    chart.add_column("", no_wrap=True)
    chart.add_column("bars", no_wrap=True, min_width=BAR_WIDTH)
    scale = max(max(r.traffic_share, r.golden_share) for r in gaps[:top]) or 1.0  # the largest share: a full bar
    for row in gaps[:top]:
        chart.add_row(row.label, "[cyan]traffic[/]\n[green]golden[/]",
                      _bar(row.traffic_share / scale, "cyan") + f" {row.traffic_share:.0%}\n"
                      + _bar(row.golden_share / scale, "green") + f" {row.golden_share:.0%}")
    console.print(chart)
    if len(gaps) > top:
        console.print(f"  [dim]… {len(gaps) - top} more (--top, or --json)[/]")


def _bar(share: float, colour: str) -> str:
    """A horizontal bar of ``share`` (0..1) in eighth-blocks, ``BAR_WIDTH`` cells at 100 %."""
    eighths = round(max(0.0, min(1.0, share)) * BAR_WIDTH * 8)
    full, rest = divmod(eighths, 8)
    text = "█" * full + ("" if not rest else " ▏▎▍▌▋▊▉"[rest])
    return f"[{colour}]{text or '·'}[/]"

