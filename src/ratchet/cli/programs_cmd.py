"""``ratchet programs``: what is registered, and from where."""

from __future__ import annotations

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state

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
