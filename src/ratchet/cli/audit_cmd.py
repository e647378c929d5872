"""``ratchet audit``: check the audit log's chain end to end, and list its entries.

Exit codes of ``audit verify``: 0 the chain is intact, 1 it is broken (each break is named
with its file and line).
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json
from ratchet.cli.state import get_state

app = typer.Typer(help="The tamper-evident audit log of operator and automatic actions (<home>/audit/).",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="machine-readable output")
_OUTCOME_STYLES = {"ok": "green", "refused": "yellow", "failed": "red"}


def _day(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise typer.BadParameter(f"--since must be a date like 2025-06-01, got {value!r}") from None


@app.command("verify")
def verify(ctx: typer.Context, as_json: bool = _JSON) -> None:
    """Recompute every entry's hash and the chain across daily files; exit 1 when anything was edited, removed,
    inserted, reordered or cut off."""
    from ratchet.audit import verify_audit

    report = verify_audit(get_state(ctx).settings.home_dir)
    if as_json:
        print_json(report.to_dict())
    else:
        for problem in report.problems:
            label = "[yellow]warning[/]" if problem.warning else "[bold red]broken[/]"
            err_console.print(f"{label} {escape(str(problem))}", highlight=False)
        where = escape(str(report.directory))
        if report.ok:
            console.print(f"[bold green]ok[/]: {where}: {report.entries} entries in {len(report.files)} daily "
                          f"file(s), seq 1–{report.last_seq}, chain intact", highlight=False, soft_wrap=True)
        else:
            console.print(f"[bold red]BROKEN[/]: {where}: {len(report.errors)} problem(s) in {report.entries} entries",
                          highlight=False, soft_wrap=True)
    raise typer.Exit(0 if report.ok else 1)


@app.command("list")
def list_entries(
    ctx: typer.Context,
    since: str | None = typer.Option(None, "--since", help="from this day on (UTC, YYYY-MM-DD)"),
    action: str | None = typer.Option(None, "--action", help="an action or its prefix, e.g. experiment"),
    limit: int = typer.Option(200, "--limit", min=1, help="the newest N entries"),
    as_json: bool = _JSON,
) -> None:
    """Entries, oldest first: who did what to what, when, from where, and the outcome."""
    from ratchet.audit import read_entries

    entries = read_entries(get_state(ctx).settings.home_dir, since=_day(since), action=action, limit=limit)
    if as_json:
        print_json(entries)
        return
    table = Table(title=f"{len(entries)} audit entr{'y' if len(entries) == 1 else 'ies'}", title_justify="left")
    for column in ("seq", "at (UTC)", "actor", "action", "target", "outcome", "source"):
        table.add_column(column, overflow="fold", justify="right" if column == "seq" else "left")
    for e in entries:
        outcome = str(e.get("outcome"))
        shown = f"[{_OUTCOME_STYLES.get(outcome, 'dim')}]{outcome}[/]"
        if e.get("reason"):
            shown += f" {escape(str(e['reason']))}"
        source = str(e.get("source") or "") + (f" {e['client']}" if e.get("client") else "")
        table.add_row(str(e.get("seq")), _when(e.get("ts")), escape(str(e.get("actor"))), escape(str(e.get("action"))),
                      escape(str(e.get("target") or "")), shown, escape(source))
    console.print(table)


def _when(ts: object) -> str:
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%S") if isinstance(ts, int | float) else ""
