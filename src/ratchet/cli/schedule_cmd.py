"""``ratchet schedule``: run the cycle, checks, cleanup, flywheel triage and eval regression on their cron schedules
(or print a crontab)."""

from __future__ import annotations

from datetime import datetime

import typer
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json
from ratchet.cli.state import get_state

app = typer.Typer(help="Scheduled jobs: the monthly cycle, hourly checks, weekly cleanup, weekly flywheel triage, "
                  "daily eval regression.",
                  no_args_is_help=True)


@app.command("run")
def run(ctx: typer.Context) -> None:
    """Run the scheduler until SIGTERM or Ctrl-C: each job in its own `ratchet` process, never two at once."""
    from ratchet.ops.scheduler import Scheduler, schedule_log_path

    settings = get_state(ctx).settings
    scheduler = Scheduler(settings)  # invalid cron expressions fail here, before anything runs

    def started(s: Scheduler) -> None:
        table = Table(title=f"ratchet schedule ({settings.schedule.timezone})", title_justify="left")
        for column in ("job", "cron", "next run", "command"):
            table.add_column(column)
        next_runs = s.next_runs()
        for job, argv in s.commands.items():
            when = next_runs.get(job)
            table.add_row(job, getattr(settings.schedule, f"{job}_cron", "?"),
                          when.isoformat(sep=" ", timespec="minutes") if isinstance(when, datetime) else "-",
                          " ".join(["ratchet", *argv[3:]] if argv[1:3] == ["-m", "ratchet"] else argv))
        console.print(table)
        console.print(f"runs are logged to {schedule_log_path(settings)}; stop with Ctrl-C or SIGTERM",
                      highlight=False, soft_wrap=True)

    scheduler.run_forever(on_start=started)
    console.print("scheduler stopped")


@app.command("run-job")
def run_job(ctx: typer.Context, job: str = typer.Argument(..., help="cycle, checks, cleanup, flywheel or "
                                                                    "eval_regression"),
            as_json: bool = typer.Option(False, "--json")) -> None:
    """Run one job now, with the scheduler's lock and log (what the crontab lines call). Exits with its code."""
    from ratchet.ops.scheduler import JOBS, Scheduler

    if job not in JOBS:
        raise typer.BadParameter(f"unknown job {job!r} (choose from {', '.join(JOBS)})", param_hint="JOB")
    result = Scheduler(get_state(ctx).settings).run_job(job)
    if as_json:
        print_json(result.to_dict())
    elif result.status == "skipped":
        err_console.print(f"{job} skipped: {result.reason}", highlight=False)
    else:
        console.print(f"{job} {result.status} (exit {result.exit_code}) in {result.duration_s:.1f} s", highlight=False)
    code = result.exit_code if result.status == "failed" and result.exit_code and 0 < result.exit_code < 256 else 1
    raise typer.Exit(0 if result.status in ("ok", "skipped") else code)


@app.command("crontab")
def crontab(ctx: typer.Context) -> None:
    """Print crontab lines equivalent to `ratchet schedule run` (install: `ratchet schedule crontab | crontab -`)."""
    from ratchet.ops.scheduler import crontab_lines

    for line in crontab_lines(get_state(ctx).settings):
        typer.echo(line)
