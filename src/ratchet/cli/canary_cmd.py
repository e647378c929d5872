"""``ratchet canary``: score production and live candidates on each signature's fixed probes; show probes and history.

Exit codes of ``canary run``::

    0  every version scored; no drop found
    1  a live candidate scores worse than its baseline (the canary rollback trigger fires),
       or production dropped against its own trailing runs
    2  a signature could not run (its message says why), or a configuration error
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, err_console, fail, print_json, progress_bar, version_progress
from ratchet.cli.state import get_state

app = typer.Typer(help="Canaries: a fixed probe set per signature, scored on production and every live candidate.",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="machine-readable output")
_SIGNATURE = typer.Option(None, "--signature", "-s", help="one signature (default: all)")


def _stamp(at: float | None) -> str:
    return "–" if not at else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _points(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:+.1f}"


def print_degradation(verdicts: dict[str, dict[str, Any]]) -> None:
    """A table of production's degradation verdicts (``Degradation.to_dict()`` by signature)."""
    table = Table(title="production against its trailing runs", title_justify="left", box=None, pad_edge=False)
    for column in ("signature", "version", "verdict", "newest", "trailing", "change (interval)", "probes"):
        table.add_column(column, overflow="fold")
    waiting = []
    for name, v in verdicts.items():
        status = v.get("status")
        shown = ("[red]dropped[/]" if status == "degraded" else "[green]held[/]" if status == "ok"
                 else "[dim]not enough data[/]")
        if status not in ("degraded", "ok"):
            waiting.append(f"{name}: {v.get('reason')}")
        change = "–" if v.get("drop") is None else (f"{_points(-v['drop'])} ({_points(v.get('ci_low'))} to "
                                                    f"{_points(v.get('ci_high'))}) points")
        latest, trailing = v.get("latest_score"), v.get("baseline_score")
        table.add_row(name, str(v.get("version")), shown, "–" if latest is None else f"{latest:.3f}",
                      "–" if trailing is None else f"{trailing:.3f} ({v.get('trailing_runs')} runs)", change,
                      str(v.get("n") or "–"))
    console.print(table)
    for line in waiting:
        console.print(f"  [dim]{line}[/]", highlight=False)


@app.command("run")
def run(
    ctx: typer.Context,
    signature: str | None = _SIGNATURE,
    probes: Path | None = typer.Option(None, "--probes", help="your own labelled probes (.jsonl/.json/.csv) for "
                                       "this run; needs --signature"),
    due_only: bool = typer.Option(False, "--due-only", help="like the controller: only signatures whose interval "
                                  "has passed (default: run now)"),
    as_json: bool = _JSON,
) -> None:
    """Score production and both arms of every live experiment on the probes; record, export, and judge them."""
    from ratchet.monitor.canary import run_canaries
    from ratchet.store.db import StateDB

    state = get_state(ctx)
    settings, registry = state.settings, state.registry
    if probes is not None and signature is None:
        fail("--probes needs --signature: a probe file belongs to one signature")
    names = [registry.get(signature).name] if signature else None
    db = StateDB.connect(settings)
    with progress_bar(enabled=not as_json) as progress:
        report = run_canaries(settings, registry, db=db, signatures=names, force=not due_only, probe_file=probes,
                              on_progress=version_progress(progress))
    db.dispose()
    data = report.to_dict()
    if as_json:
        print_json(data)
    else:
        _print_report(data)
    signatures = data["signatures"].values()
    if any(sig["status"] == "error" for sig in signatures):
        raise typer.Exit(2)
    fired = any(check["fired"] for sig in signatures for check in sig["experiments"].values())
    if fired or any((sig.get("degradation") or {}).get("degraded") for sig in signatures):
        raise typer.Exit(1)


def _print_report(data: dict[str, Any]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("signature", "version", "roles", "score", "probes", "errors", "seconds"):
        table.add_column(column, overflow="fold", justify="right" if column in ("score", "probes", "errors",
                                                                                 "seconds") else "left")
    notes, verdicts = [], {}
    for name, sig in data["signatures"].items():
        if sig["status"] == "error":
            err_console.print(f"[bold red]error:[/] {name}: {sig['reason']}", highlight=False)
            continue
        if sig["status"] != "ran":
            due = f" (next due {_stamp(sig['next_due'])} UTC)" if sig["status"] == "not_due" else ""
            reason = f": {sig['reason']}" if sig["reason"] else ""
            notes.append(escape(f"{name}: {sig['status'].replace('_', ' ')}{due}{reason}"))
            continue
        for version in sig["versions"]:
            run = version.get("run")
            if run is None:
                table.add_row(name, version["version"], ", ".join(version["roles"]), f"[red]{version['error']}[/]",
                              "", "", "")
                continue
            failed = run["errors"] + run["parse_failures"]
            table.add_row(name, version["version"], ", ".join(version["roles"]), f"{run['score']:.3f}",
                          str(run["n"]), f"[yellow]{failed}[/]" if failed else "0", f"{run['seconds']:.1f}")
        probes = sig["probes"]
        created = " (new)" if probes["created"] else ""
        skipped = f"; {probes['skipped_lines']} lines skipped" if probes["skipped_lines"] else ""
        notes.append(escape(f"{name}: {probes['probes']} probes{created} from {probes['description']} · probe set "
                     f"{probes['fingerprint']}{skipped}"))
        if sig["degradation"]:
            verdicts[name] = sig["degradation"]
        for experiment_id, check in sig["experiments"].items():
            mark = "[bold red]roll back[/]" if check["fired"] else "[green]no trigger[/]"
            notes.append(f"{name} {experiment_id}: {mark}: {escape(check['message'])}")
    if table.row_count:
        console.print(table)
    for line in notes:
        console.print(f"  {line}", highlight=False)
    if verdicts:
        print_degradation(verdicts)
    if data["textfile"]:
        console.print(f"[dim]metrics: {data['textfile']}[/]", highlight=False)


@app.command("probes")
def probes(
    ctx: typer.Context,
    signature: str | None = _SIGNATURE,
    regenerate: bool = typer.Option(False, "--regenerate", help="sample the stored probe set again (its history "
                                    "starts over: runs pair only on the same probes)"),
    as_json: bool = _JSON,
) -> None:
    """Show each signature's probe set (sampling it the first time), or sample it again with --regenerate."""
    from ratchet.data.datasets import DatasetStore
    from ratchet.monitor.canary import ensure_probes
    from ratchet.programs.production import ProductionPointers
    from ratchet.programs.versions import VersionStore
    from ratchet.store.db import StateDB

    state = get_state(ctx)
    settings, registry = state.settings, state.registry
    canary = settings.monitor.canary
    specs = [registry.get(signature)] if signature else list(registry)
    db = StateDB.connect(settings)
    pointers = ProductionPointers(db, VersionStore(settings.home_dir, db))
    datasets = DatasetStore(settings.home_dir, settings.data, registry=registry)
    found: dict[str, dict[str, Any]] = {}
    for spec in specs:
        configured = canary.probe_files.get(spec.name)
        if regenerate:
            ensure_probes(spec, settings.home_dir, canary, pointers=pointers, datasets=datasets, regenerate=True)
        path = settings.resolve(configured) if configured is not None else None
        found[spec.name] = ensure_probes(spec, settings.home_dir, canary, pointers=pointers, datasets=datasets,
                                         path=path).to_dict()
        if regenerate and configured is not None:
            found[spec.name]["note"] = ("the stored sample was regenerated, but monitor.canary.probe_files names "
                                        f"{path} for this signature: runs use that file")
    db.dispose()
    if as_json:
        print_json(found)
        return
    table = Table(box=None, pad_edge=False)
    for column in ("signature", "probes", "source", "fingerprint", "file"):
        table.add_column(column, overflow="fold")
    for name, info in found.items():
        table.add_row(name, str(info["probes"]) + (" [green](new)[/]" if info["created"] else ""),
                      escape(info["description"]), info["fingerprint"] or "–",
                      info["path"] if info["probes"] else "–")
    console.print(table)
    for name, info in found.items():
        if info["skipped_lines"]:
            console.print(f"  {name}: {info['skipped_lines']} lines skipped: {'; '.join(info['errors'])}",
                          highlight=False)
        if info.get("note"):
            console.print(f"  [yellow]{name}: {info['note']}[/]", highlight=False)


@app.command("history")
def history(
    ctx: typer.Context,
    signature: str = typer.Argument(..., help="registered signature name"),
    version: str | None = typer.Option(None, "--version", help="one version (default: all)"),
    limit: int = typer.Option(20, "--limit", min=1, help="newest N runs"),
    as_json: bool = _JSON,
) -> None:
    """The newest canary runs of a signature, from the state database."""
    from ratchet.store.canaries import canary_history
    from ratchet.store.db import StateDB

    state = get_state(ctx)
    name = state.registry.get(signature).name
    db = StateDB.connect(state.settings)
    runs = canary_history(db, name, version, limit=limit)
    db.dispose()
    if as_json:
        print_json([run.to_dict() for run in runs])
        return
    if not runs:
        console.print(f"no canary runs of {name} yet (`ratchet canary run -s {name}`)")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("finished (UTC)", "version", "score", "probes", "errors", "parse failures", "seconds",
                   "probe set", "pass"):
        table.add_column(column, no_wrap=column == "finished (UTC)")
    for r in runs:
        table.add_row(_stamp(r.at), r.version, f"{r.score:.3f}", str(r.n), str(r.errors), str(r.parse_failures),
                      f"{r.seconds:.1f}", r.probe_set, r.pass_id)
    console.print(table)
