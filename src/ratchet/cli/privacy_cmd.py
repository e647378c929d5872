"""``ratchet privacy``: right to deletion — remove one user's records everywhere Ratchet keeps them.

Exit codes of ``delete-user`` and ``reapply``: 0 every step ended ``ok``/``nothing``, 1 a step failed (the
others still ran; run it again once the cause is fixed: a deletion is idempotent).
"""

from __future__ import annotations

import typer
from rich.markup import escape
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state

app = typer.Typer(help="Right to deletion: remove a user's telemetry, feedback, requests and examples.",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="machine-readable output")
_STYLES = {"ok": "green", "nothing": "dim", "failed": "bold red"}
_SHOWN = ("files_rewritten", "malformed_kept", "malformed_removed", "from_request_index", "from_telemetry",
          "versions", "signatures", "removed", "dialect", "truncated_files", "files", "revisions")


@app.command("delete-user")
def delete_user(
    ctx: typer.Context,
    user_id: str = typer.Argument(..., help="the user id the service was called with (user_id); never stored"),
    as_json: bool = _JSON,
) -> None:
    """Remove every record of USER_ID: telemetry (rotated .gz too), shadow records, feedback, request index,
    dataset examples (all versions rewritten, a new one committed), program demos, run files; then scrub the
    database files. Audited by pseudonym, and applied again by `ratchet restore`."""
    from ratchet.privacy import delete_user_data

    report = delete_user_data(get_state(ctx).settings, user_id)
    _show([report], as_json)


@app.command("reapply")
def reapply(ctx: typer.Context, as_json: bool = _JSON) -> None:
    """Run every deletion the audit log records again (`ratchet restore` does this after restoring)."""
    from ratchet.privacy import reapply_deletions

    report = reapply_deletions(get_state(ctx).settings)
    _show([report] if report is not None else [], as_json, single=False)


def _show(reports: list, as_json: bool, *, single: bool = True) -> None:
    failed = any(r.failed for r in reports)
    if as_json:
        print_json(reports[0].to_dict() if single else [r.to_dict() for r in reports])
        raise typer.Exit(1 if failed else 0)
    if not reports:
        console.print("no recorded deletions", highlight=False)
    for report in reports:
        who = f"user {report.user}" if report.users == 1 else report.user
        table = Table(title=f"{who}: {report.status} in {report.seconds:.2f} s "
                            f"(deletion {report.deletion_id})", title_justify="left")
        for column in ("step", "status", "count", "details"):
            table.add_column(column, overflow="fold", justify="right" if column == "count" else "left")
        for step in report.steps:
            shown = {k: v for k, v in step.details.items() if k in _SHOWN and v not in (None, [], 0)}
            details = ", ".join(_detail(k, v) for k, v in shown.items())
            if step.error:
                details = f"{step.error}" + (f"; {details}" if details else "")
            style = _STYLES.get(step.status, "")
            table.add_row(step.step, f"[{style}]{step.status}[/]", str(step.count), escape(details))
        console.print(table)
    raise typer.Exit(1 if failed else 0)


def _detail(key: str, value: object) -> str:
    if key == "signatures" and isinstance(value, list):
        return "; ".join(f"{s['signature']}: {s['examples']} example(s), {len(s['versions_rewritten'])} version(s) "
                         f"rewritten" + (f", new {s['new_version']}" if s.get("new_version") else "") for s in value)
    if isinstance(value, list):
        return f"{key}: {', '.join(map(str, value))}"
    return f"{key}={value}"
