"""``ratchet annotate``: the annotation queue — take the next task under a lease, answer it, export the answers,
see the backlog and the annotators' agreement. Answers are audited (``annotation.submit``)."""

from __future__ import annotations

import getpass
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json
from ratchet.cli.state import get_state
from ratchet.store.db import StateDB

app = typer.Typer(help="The annotation queue: next (a task under a lease), submit, export, stats.",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="machine-readable output")
_ANNOTATOR = typer.Option(None, "--annotator", help="who annotates (default: the OS user)")


def _db(ctx: typer.Context) -> StateDB:
    return StateDB.connect(get_state(ctx).settings)


def _annotator(name: str | None) -> str:
    if name is not None and name.strip():
        return name.strip()
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _when(at: float | None) -> str:
    return "—" if at is None else datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@app.command("next")
def next_cmd(
    ctx: typer.Context,
    signature: str | None = typer.Option(None, "--signature", "-s", help="only this signature's tasks"),
    annotator: str | None = _ANNOTATOR,
    lease_minutes: float = typer.Option(15.0, "--lease-minutes", help="how long the task stays yours"),
    examples: int = typer.Option(3, "--examples", help="nearest labelled examples to show"),
    as_json: bool = _JSON,
) -> None:
    """Lease the highest-priority task you have not answered and show it (the same one again while you hold it)."""
    from ratchet.annotate import next_view

    state = get_state(ctx)
    who = _annotator(annotator)
    view = next_view(state.settings, state.registry, _db(ctx), annotator=who, signature=signature,
                     lease_s=lease_minutes * 60, examples=examples)
    if view is None:
        if as_json:
            print_json({"task": None})
        else:
            console.print(f"no task waiting for {who}" + (f" on {signature}" if signature else ""), highlight=False)
        return
    data = view.to_dict()
    if as_json:
        print_json(data)
        return
    _show_task(data["task"], who, data["allowed_labels"], data["nearest"])


def _show_task(task: dict[str, Any], who: str, labels: dict[str, list[Any]], neighbours: list[dict[str, Any]]) -> None:
    console.print(f"[bold]task {task['task_id']}[/] · {task['signature']} · request {task['request_id']} · "
                  f"week {task['week']} · needs {task['needed']} annotation(s)", highlight=False)
    console.print(f"leased to {who} until {_when(task['lease_expires_at'])}", highlight=False)
    if task["cluster_id"] or task["cluster_label"]:
        console.print(f"cluster: {task['cluster_id'] or '—'} {task['cluster_label'] or ''}", highlight=False)
    table = Table(title="case", show_header=True)
    table.add_column("field")
    table.add_column("role")
    table.add_column("value", overflow="fold")
    for name, value in task["inputs"].items():
        table.add_row(name, "input", str(value))
    for name, value in task["output"].items():
        table.add_row(name, "model output", str(value))
    console.print(table)
    for name, choices in labels.items():
        console.print(f"allowed {name}: {', '.join(map(str, choices))}", highlight=False, soft_wrap=True)
    if neighbours:
        near = Table(title="nearest labelled examples")
        near.add_column("similarity")
        near.add_column("inputs", overflow="fold")
        near.add_column("label", overflow="fold")
        for n in neighbours:
            near.add_row(f"{n['similarity']:.2f}", "; ".join(map(str, n["inputs"].values())),
                         ", ".join(f"{k}={v}" for k, v in n["outputs"].items()))
        console.print(near)
    console.print(f"answer: ratchet annotate submit {task['task_id']} --accept | --set FIELD=VALUE … | "
                  "--reject --reason … | --skip", highlight=False)


@app.command("submit")
def submit_cmd(
    ctx: typer.Context,
    task_id: str = typer.Argument(..., help="the task id `ratchet annotate next` showed"),
    set_values: list[str] | None = typer.Option(None, "--set", help="field=value: correct an output field "
                                                                   "(repeat for several)"),
    accept: bool = typer.Option(False, "--accept", help="the model's output is right"),
    reject: bool = typer.Option(False, "--reject", help="the case is unusable (needs --reason)"),
    skip: bool = typer.Option(False, "--skip", help="leave it to another annotator"),
    reason: str | None = typer.Option(None, "--reason", help="why (required with --reject)"),
    annotator: str | None = _ANNOTATOR,
    as_json: bool = _JSON,
) -> None:
    """Answer a task you hold: correct it (--set), accept, reject (with a reason) or skip it."""
    from ratchet.annotate import get_task, parse_assignments, submit
    from ratchet.audit import audited

    state = get_state(ctx)
    who = _annotator(annotator)
    db = _db(ctx)
    with audited(state.settings, "annotation.submit", target=task_id, actor=who) as note:
        values = None
        if set_values:
            values = parse_assignments(state.registry.get(get_task(db, task_id).signature).schema, set_values)
        answer = submit(db, state.registry, task_id, who, set_values=values, accept=accept, reject=reject,
                        skip=skip, reason=reason)
        note.details.update({"kind": answer.kind, "fields": sorted(values or {})})
        note.reason = answer.reason
    status = get_task(db, task_id).status
    if as_json:
        print_json({"annotation": answer.to_dict(), "task_status": status})
        return
    console.print(f"{answer.kind} recorded on task {task_id} by {who}; the task is {status}", highlight=False)


@app.command("export")
def export_cmd(
    ctx: typer.Context,
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="where <signature>.jsonl files go"),
    signature: str | None = typer.Option(None, "--signature", "-s", help="only this signature"),
    as_json: bool = _JSON,
) -> None:
    """Write accepted and corrected cases as labelled JSON Lines with their provenance (owner-only files)."""
    from ratchet.annotate import export

    result = export(_db(ctx), output_dir, signature)
    if as_json:
        print_json(result.to_dict())
        return
    if not result.files:
        err_console.print("nothing to export: no task is done yet", highlight=False)
    for name, path in result.files.items():
        console.print(f"{name}: {result.exported[name]} case(s) → {path}", highlight=False)
    for name, count in result.conflicts.items():
        console.print(f"{name}: {count} double-annotated task(s) left out: the annotators disagree",
                      highlight=False)


@app.command("stats")
def stats_cmd(ctx: typer.Context, as_json: bool = _JSON) -> None:
    """Backlog per signature, answers per annotator, and agreement (Cohen's kappa) on double-annotated tasks."""
    from ratchet.annotate import stats

    now = time.time()
    result = stats(_db(ctx), now=now)
    if as_json:
        print_json(result.to_dict())
        return
    if not result.backlog:
        console.print("the annotation queue is empty")
        return
    widest = max((b.open + b.leased for b in result.backlog), default=0) or 1
    backlog = Table(title="backlog")
    backlog.add_column("signature", no_wrap=True)
    for column in ("open", "leased", "done", "skipped", "oldest (h)", "waiting"):
        backlog.add_column(column)
    for b in result.backlog:
        waiting = b.open + b.leased
        bar = "█" * max(1 if waiting else 0, round(12 * waiting / widest))
        age = "—" if b.oldest_age_s is None else f"{b.oldest_age_s / 3600:.1f}"
        backlog.add_row(b.signature, str(b.open), str(b.leased), str(b.done), str(b.skipped), age,
                        f"[cyan]{bar}[/]")
    console.print(backlog)
    if result.annotators:
        people = Table(title="annotators")
        for column in ("annotator", "accept", "correct", "reject", "skip"):
            people.add_column(column)
        for name in sorted(result.annotators):
            kinds = result.annotators[name]
            people.add_row(name, *(str(kinds.get(k, 0)) for k in ("accept", "correct", "reject", "skip")))
        console.print(people)
    for g in result.agreement:
        kappa = "—" if g.kappa is None else f"{g.kappa:.3f}"
        console.print(f"{g.signature}: {g.agreed}/{g.tasks} double-annotated tasks agree, Cohen's kappa {kappa}",
                      highlight=False)
