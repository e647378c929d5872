"""``ratchet doctor``: check this machine and configuration, and say how to fix what is broken."""

from __future__ import annotations

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state

_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]", "skip": "[dim]skip[/]"}


def doctor(
    ctx: typer.Context,
    remote: bool = typer.Option(True, "--remote/--no-remote", help="call each configured remote model once "
                                                                   "(one 1-token request)"),
    as_json: bool = typer.Option(False, "--json", help="machine-readable output"),
) -> None:
    """Check Python, packages, the CPU, the embedded model (load + a timed completion, in a child process),
    the home directory, disk, the state database, remote models and their keys, alert channels and promtool.

    Exits 1 when any check fails; each failure says how to fix it.
    """
    from ratchet.ops.doctor import run_checks

    settings = get_state(ctx).settings
    if as_json:
        checks = run_checks(settings, remote=remote)
    else:
        with console.status("checking…") as status:
            checks = run_checks(settings, remote=remote, on_check=lambda name: status.update(f"checking {name}…"))
    failed = [c for c in checks if c.status == "fail"]
    if as_json:
        print_json({"ok": not failed, "config_file": str(settings.config_file) if settings.config_file else None,
                    "checks": [c.to_dict() for c in checks]})
    else:
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column("check", style="bold")
        table.add_column("status")
        table.add_column("detail", overflow="fold")
        for check in checks:
            detail = check.detail if check.fix is None else f"{check.detail}\n[cyan]fix:[/] {check.fix}"
            table.add_row(check.name, _STYLE[check.status], detail)
        console.print(table)
        verdict = f"[bold red]{len(failed)} check(s) failed[/]" if failed else "[green]all checks passed[/]"
        warned = sum(c.status == "warn" for c in checks)
        console.print(f"\n{verdict}" + (f", {warned} warning(s)" if warned else ""))
    if failed:
        raise typer.Exit(1)
