"""``ratchet programs``: what is registered, and from where."""

from __future__ import annotations

from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import CliState, get_state
from ratchet.errors import ExperimentError
from ratchet.programs.describe import diff_versions, list_versions, show_version
from ratchet.programs.production import ProductionPointers
from ratchet.programs.versions import VersionStore

app = typer.Typer(help="Registered programs and their versions.", no_args_is_help=True)


@app.command("list")
def list_programs(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """List registered programs: signature, fields, metric and where each is defined."""
    registry = get_state(ctx).registry
    rows = [
        {
            "signature": spec.name,
            "description": spec.description,
            "inputs": spec.schema.to_dict()["inputs"],
            "outputs": spec.schema.to_dict()["outputs"],
            "metric": spec.metric_name,
            "source": spec.source,
            "file": spec.source_file,
            "data": {k: str(v) for k, v in spec.data.items()},
        }
        for spec in registry
    ]
    if as_json:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} registered program(s)", title_justify="left")
    for column in ("signature", "inputs → outputs", "metric", "defined in"):
        table.add_column(column, overflow="fold")
    for spec in registry:
        fields = ", ".join(f"{f.name}: {f.type}" for f in spec.schema.inputs)
        outs = ", ".join(f"{f.name}: {f.type if not f.choices else f'one of {len(f.choices)}'}"
                         for f in spec.schema.outputs)
        table.add_row(f"[bold]{spec.name}[/]\n[dim]{spec.description}[/]", f"{fields}\n→ {outs}",
                      spec.metric_name, spec.source_file)
    console.print(table)


@app.command("versions")
def versions(ctx: typer.Context, signature: str = typer.Argument(...),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """List a signature's versions: lineage, optimizer, scores; mark production."""
    state = get_state(ctx)
    spec = state.registry.get(signature)
    listing = list_versions(_pointers(state), spec.name)
    production = listing.production
    if as_json:
        print_json(listing.to_dict())
        return
    table = Table(title=f"{spec.name}: {len(listing.versions)} version(s), production = {production}",
                  title_justify="left")
    for column in ("version", "created", "parent", "dataset", "optimizer", "test score", "fingerprint"):
        table.add_column(column)
    for v in listing.versions:
        score = v.scores.get("test")
        marker = " [green]●[/]" if v.version == production else ""
        table.add_row(f"{v.version}{marker}", v.created, v.parent or "", v.dataset_version or "", v.optimizer or "",
                      "" if score is None else f"{score:.3f}", v.fingerprint[:12])
    console.print(table)


@app.command("show")
def show(ctx: typer.Context, signature: str = typer.Argument(...), version: str = typer.Argument(...),
         as_json: bool = typer.Option(False, "--json")) -> None:
    """Show one version: metadata, instructions and demos of each predictor."""
    state = get_state(ctx)
    spec = state.registry.get(signature)
    shown = show_version(_pointers(state).versions, spec, version)
    meta, predictors = shown["metadata"], shown["predictors"]
    if as_json:
        print_json(shown)
        return
    console.print(f"[bold]{spec.name} {version}[/]")
    for key in ("created", "parent", "dataset_version", "optimizer", "optimizer_params", "fingerprint", "lm"):
        if meta.get(key):
            console.print(f"  {key}: {meta[key]}")
    for name, predictor in predictors.items():
        console.print(f"\n[bold]{name}[/] instructions:\n  {predictor['instructions']}")
        console.print(f"[bold]{name}[/] demos ({len(predictor['demos'])}):")
        for demo in predictor["demos"]:
            console.print("  " + _demo_line(demo))


@app.command("diff")
def diff(ctx: typer.Context, signature: str = typer.Argument(...), v1: str = typer.Argument(...),
         v2: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
    """What changed between two versions: instructions (unified diff) and demos (added, removed)."""
    state = get_state(ctx)
    spec = state.registry.get(signature)
    result = diff_versions(_pointers(state).versions, spec, v1, v2)
    if as_json:
        print_json(result)
        return
    for name, change in result["predictors"].items():
        console.print(f"[bold]{name}[/]")
        if change["instructions_diff"]:
            for line in change["instructions_diff"]:
                style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
                console.print(f"[{style}]{line}[/]", highlight=False, markup=True)
        else:
            console.print("  instructions unchanged")
        console.print(f"  demos: {change['demos_before']} → {change['demos_after']} "
                      f"(+{len(change['demos_added'])} −{len(change['demos_removed'])})")
        for demo in change["demos_added"][:10]:
            console.print("  [green]+ " + _demo_line(demo) + "[/]", highlight=False)
        for demo in change["demos_removed"][:10]:
            console.print("  [red]- " + _demo_line(demo) + "[/]", highlight=False)


@app.command("promote")
def promote(ctx: typer.Context, signature: str = typer.Argument(...), version: str = typer.Argument(...),
            reason: str = typer.Option("promoted by hand", "--reason")) -> None:
    """Make a version the production version (served wherever no experiment routes traffic).

    Also how an operator rolls production back by hand. Refused while an experiment of the signature
    is live (promote or roll that back with `ratchet ab`); one compare-and-set in the state database,
    so the controller never undoes it.
    """
    from ratchet.audit import audited
    from ratchet.rollout.experiments import ExperimentStore

    state = get_state(ctx)
    with audited(state.settings, "programs.promote", target=signature, details={"version": version}) as note:
        note.reason = reason
        spec = state.registry.get(signature)
        pointers = _pointers(state)
        live = [e.experiment_id for e in ExperimentStore(pointers.db).list(signature=spec.name,
                                                                           statuses=("running", "paused"))]
        if live:
            raise ExperimentError(f"{spec.name} has a live experiment ({', '.join(live)}): promote or roll it back "
                                  "with `ratchet ab promote|rollback` first")
        before = note.details["from_version"] = pointers.get(spec.name)
        pointers.versions.load(spec, version)  # refuses a damaged version before it can serve
        pointers.set(spec.name, version, actor="operator", reason=reason, expected=before)
    console.print(f"{spec.name}: production {before} → [bold]{version}[/]")


@app.command("publish")
def publish(ctx: typer.Context, signatures: list[str] = typer.Argument(None, help="signatures (default: all)"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Copy versions saved before the move to PostgreSQL into it, so every host can serve them.

    Each version is checked against its fingerprint first; a number the database already holds with
    another fingerprint is reported, never overwritten. Safe to re-run.
    """
    from ratchet.audit import audited
    from ratchet.programs.publish import publish_versions
    from ratchet.store.db import StateDB

    state = get_state(ctx)
    names = [state.registry.get(name).name for name in signatures] if signatures else state.registry.names()
    with audited(state.settings, "programs.publish", target=",".join(names)) as note:
        done = publish_versions(VersionStore(state.settings.home_dir, StateDB.connect(state.settings)), names)
        counts = {outcome: sum(1 for p in done if p.outcome == outcome)
                  for outcome in ("published", "already", "conflict", "damaged")}
        note.details.update(counts)
    if as_json:
        print_json({"versions": [p.to_dict() for p in done], **counts})
    else:
        for p in done:
            if p.outcome in ("conflict", "damaged"):
                console.print(f"[yellow]{p.signature} {p.version}: {p.outcome}[/] — {p.detail}", highlight=False)
        console.print(f"published {counts['published']}, already shared {counts['already']}, "
                      f"conflicts {counts['conflict']}, damaged {counts['damaged']}")
    if counts["conflict"] or counts["damaged"]:
        raise typer.Exit(1)


def _pointers(state: CliState) -> ProductionPointers:
    from ratchet.store.db import StateDB

    db = StateDB.connect(state.settings)
    return ProductionPointers(db, VersionStore(state.settings.home_dir, db))


def _demo_line(demo: dict[str, Any]) -> str:
    return " | ".join(f"{k}: {str(v)[:60]}" for k, v in demo.items())
