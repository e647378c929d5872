"""``ratchet dataset``: versioned training data — create, add, list, load, diff, archive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state
from ratchet.data.datasets import LATEST, SPLITS, DatasetStore, WriteResult
from ratchet.data.records import read_batch, write_batch
from ratchet.errors import DataError
from ratchet.store.jsonl import JsonlReadStats

app = typer.Typer(help="Versioned training datasets: create, add, list, load, diff, archive.", no_args_is_help=True)

_SIGNATURE = typer.Option(..., "--signature", "-s", help="registered signature name")
_JSON = typer.Option(False, "--json", help="machine-readable output")
_EXAMPLES = typer.Option([], "--examples", "-e", help="example file (.jsonl/.json/.csv) or directory; repeatable")
_MORE = typer.Argument(None, metavar="FILE", show_default=False,
                       help="more example files (so `--examples dir/*.jsonl` works)")
_SOURCE = typer.Option(..., "--source", help="where the examples come from (git_mining, synthetic, …)")
_NOTES = typer.Option("", "--notes", help="free text stored in metadata.json")


def _store(ctx: typer.Context) -> DatasetStore:
    state = get_state(ctx)
    return DatasetStore(state.settings.home_dir, state.settings.data, registry=state.registry)


def _write(ctx: typer.Context, signature: str, examples: list[Path], more: list[Path] | None, source: str,
           notes: str, as_json: bool, *, incremental: bool) -> None:
    store = _store(ctx)
    store.latest_version(signature)  # checks the name and the registry before reading any file
    paths = [*examples, *(more or [])]
    if not paths:
        raise DataError("give example files or directories with --examples")
    stats = JsonlReadStats()
    records = read_batch(paths, signature=signature, source=source, stats=stats)
    if not records:
        reasons = "; ".join(stats.errors[:3]) or "the files hold no examples"
        raise DataError(f"no readable examples in {', '.join(map(str, paths))} ({stats.bad_lines} bad lines: "
                        f"{reasons}); nothing stored")
    write = store.add if incremental else store.create
    result = write(signature, records, source=source, notes=notes)
    summary = {**result.to_dict(), "read": {"lines": stats.lines, "examples": len(records),
                                            "skipped_lines": stats.bad_lines, "errors": stats.errors}}
    if as_json:
        print_json(summary)
        return
    _print_write(result, stats, incremental=incremental)


def _print_write(result: WriteResult, stats: JsonlReadStats, *, incremental: bool) -> None:
    verb = f"added to {result.parent}" if incremental and result.parent else "created"
    console.print(f"[bold green]{result.signature} {result.version}[/] {verb}: {result.example_count} examples "
                  f"([bold]+{result.added}[/] new)  [dim]{result.path}[/]")
    if result.skipped_duplicates:
        console.print(f"[yellow]{result.skipped_duplicates} skipped[/]: already in the dataset "
                      f"(e.g. {', '.join(result.duplicates[:3])})")
    if stats.bad_lines:
        console.print(f"[yellow]{stats.bad_lines} unreadable line(s) skipped[/]")
        for error in stats.errors[:5]:
            console.print(f"  [dim]{error}[/]", highlight=False)
    if result.rejected:
        console.print(f"[red]{len(result.rejected)} rejected[/] (not stored):")
        for rejection in result.rejected[:10]:
            console.print(f"  #{rejection.index}: {rejection.reason}  [dim]{rejection.preview}[/]", highlight=False)
        if len(result.rejected) > 10:
            console.print(f"  [dim]… {len(result.rejected) - 10} more (see --json)[/]")


@app.command("create")
def create(
    ctx: typer.Context,
    signature: str = _SIGNATURE,
    examples: list[Path] = _EXAMPLES,
    more: list[Path] | None = _MORE,
    source: str = _SOURCE,
    notes: str = _NOTES,
    as_json: bool = _JSON,
) -> None:
    """Create a new dataset version from these examples only."""
    _write(ctx, signature, examples, more, source, notes, as_json, incremental=False)


@app.command("add")
def add(
    ctx: typer.Context,
    signature: str = _SIGNATURE,
    examples: list[Path] = _EXAMPLES,
    more: list[Path] | None = _MORE,
    source: str = _SOURCE,
    notes: str = _NOTES,
    as_json: bool = _JSON,
) -> None:
    """Create a new version: the latest one's examples plus these (duplicates skipped)."""
    _write(ctx, signature, examples, more, source, notes, as_json, incremental=True)


@app.command("list")
def list_versions(ctx: typer.Context, signature: str = _SIGNATURE, as_json: bool = _JSON) -> None:
    """List a signature's versions, oldest first (latest and archived ones marked)."""
    infos = _store(ctx).list_versions(signature)
    if as_json:
        print_json({"signature": signature, "versions": [i.to_dict() for i in infos]})
        return
    if not infos:
        console.print(f"no dataset versions of {signature} yet (create one with `ratchet dataset create`)")
        return
    table = Table(title=f"{signature}: {len(infos)} version(s)", title_justify="left")
    for column in ("version", "created", "examples", "quality", "sources", "parent"):
        table.add_column(column, justify="right" if column in ("examples", "quality") else "left", overflow="fold")
    for info in infos:
        marks = " [bold green]← latest[/]" if info.latest else ""
        marks += " [dim](archived)[/]" if info.archived else ""
        quality = "–" if info.quality_mean is None else f"{info.quality_mean:.1f}"
        sources = ", ".join(f"{name} {count}" for name, count in info.sources.items())
        table.add_row(f"{info.version}{marks}", str(info.metadata.get("created", "?")),
                      str(info.example_count if info.example_count is not None else "?"), quality, sources,
                      str(info.metadata.get("parent") or "–"))
    console.print(table)


@app.command("load")
def load(
    ctx: typer.Context,
    signature: str = _SIGNATURE,
    version: str = typer.Option(LATEST, "--version", help="vYYYYMMDD_HHMMSS or latest"),
    split: str | None = typer.Option(None, "--split", help=f"only one split: {', '.join(SPLITS)}"),
    output: Path | None = typer.Option(None, "--output", "-o", help="write the examples here as JSON Lines"),
    as_json: bool = _JSON,
) -> None:
    """Show a version's summary, or write its examples to a file (an archived version is restored first)."""
    store = _store(ctx)
    target = store.check_output_path(output) if output is not None else None
    dataset = store.load(signature, version, split)
    summary = dataset.summary()
    if target is not None:
        summary["output"] = {"path": str(target), "examples": write_batch(target, dataset.records)}
    if as_json:
        print_json(summary)
        return
    _print_summary(summary)


def _print_summary(summary: dict[str, Any]) -> None:
    stats = summary["statistics"]
    quality = stats.get("quality_scores", {})
    title = f"{summary['signature']} {summary['version']}" + (f" ({summary['split']} split)" if summary["split"]
                                                                else "")
    table = Table(title=title, title_justify="left", show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("created", f"{summary['created']}  (parent: {summary['parent'] or '–'})")
    if summary["notes"]:
        table.add_row("notes", summary["notes"])
    table.add_row("examples", str(summary["examples"]) + (f" of {summary['example_count']}" if summary["split"]
                                                          else ""))
    table.add_row("splits", _counts(summary["split_counts"] or {}))
    if quality.get("count"):
        table.add_row("quality", f"mean {quality['mean']} · min {quality['min']} · p10 {quality['p10']} · "
                                 f"max {quality['max']} ({quality['count']} scored)")
    else:
        table.add_row("quality", "[dim]no scores[/]")
    table.add_row("difficulty", _counts(stats.get("difficulty", {})))
    table.add_row("sources", _counts(stats.get("sources", {})))
    table.add_row("categories", _counts(stats.get("categories", {})))
    table.add_row("path", summary["path"])
    console.print(table)
    if "output" in summary:
        console.print(f"wrote {summary['output']['examples']} examples to {summary['output']['path']}")


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "–"


@app.command("diff")
def diff(
    ctx: typer.Context,
    v1: str = typer.Argument(..., help="the older version (or latest)"),
    v2: str = typer.Argument(..., help="the newer version (or latest)"),
    signature: str = _SIGNATURE,
    as_json: bool = _JSON,
) -> None:
    """Compare two versions: examples added/removed/changed, quality and distribution changes."""
    result = _store(ctx).diff(signature, v1, v2)
    if as_json:
        print_json(result.to_dict())
        return
    counts, quality = result.counts, result.quality_mean
    changed = f", {counts['changed']} changed" if counts["changed"] else ""
    console.print(f"[bold]{result.signature}[/] {result.old} → {result.new}: {counts['old']} → {counts['new']} "
                  f"examples ([green]+{counts['added']}[/] [red]-{counts['removed']}[/]{changed})")
    if quality["change"] is not None:
        console.print(f"quality mean {quality['old']} → {quality['new']} ({quality['change']:+.2f})")
    table = Table(title="distribution", title_justify="left", box=None)
    for column in ("", "name", "old", "new", "change"):
        table.add_column(column, justify="left" if column in ("", "name") else "right")
    for kind, rows in result.distributions.items():
        for name, row in rows.items():
            if row["change"]:
                style = "green" if row["change"] > 0 else "red"
                table.add_row(kind, name, str(row["old"]), str(row["new"]), f"[{style}]{row['change']:+d}[/]")
    if table.row_count:
        console.print(table)
    for label, sample, total in (("added", result.examples_added, counts["added"]),
                                 ("removed", result.examples_removed, counts["removed"])):
        if sample:
            console.print(f"[bold]{label}[/] ({len(sample)} of {total}):")
            for example in sample:
                values = {k: v for k, v in example.items() if k != "_meta"}
                console.print(f"  {_short(values)}", highlight=False, markup=False)
    if result.examples_changed:
        console.print(f"[bold]changed[/] ({len(result.examples_changed)} of {counts['changed']}):")
        for change in result.examples_changed:
            for mark, example in (("-", change["old"]), ("+", change["new"])):
                values = {k: v for k, v in example.items() if k != "_meta"}
                console.print(f"  {mark} {_short(values)}", highlight=False, markup=False)


def _short(values: dict[str, Any], width: int = 110) -> str:
    text = "  ".join(f"{k}={v!r}" for k, v in values.items())
    return text if len(text) <= width else text[: width - 1] + "…"


@app.command("archive")
def archive(
    ctx: typer.Context,
    signature: str = _SIGNATURE,
    older_than_days: float | None = typer.Option(None, "--older-than-days", min=0,
                                                 help="default: data.archive_after_days"),
    keep: int | None = typer.Option(None, "--keep", min=0, help="never the newest K (default: data.keep_versions)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="only show what would be archived"),
    as_json: bool = _JSON,
) -> None:
    """Pack old versions into archive/<version>.tar.gz (never latest, never the newest --keep)."""
    store = _store(ctx)
    archived = store.archive(signature, older_than_days=older_than_days, keep=keep, dry_run=dry_run)
    if as_json:
        print_json({"signature": signature, "dry_run": dry_run, "archived": [i.to_dict() for i in archived]})
        return
    if not archived:
        console.print(f"{signature}: nothing to archive")
        return
    verb = "would archive" if dry_run else "archived"
    for info in archived:
        console.print(f"{verb} {signature} {info.version} ({info.example_count} examples, created "
                      f"{info.metadata.get('created')})")
    if not dry_run:
        console.print(f"[dim]in {store.root / signature / 'archive'}; `ratchet dataset load` restores one[/]")
