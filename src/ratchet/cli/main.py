"""The ``ratchet`` command."""

from __future__ import annotations

import logging
from pathlib import Path

import typer
from typer.core import TyperGroup

from ratchet.audit import operator_actor, set_audit_defaults
from ratchet.cli import (
    ab_cmd,
    annotate_cmd,
    audit_cmd,
    canary_cmd,
    collect_cmd,
    config_cmd,
    controller_cmd,
    data_cmd,
    dataset_cmd,
    flywheel_cmd,
    golden_cmd,
    keys_cmd,
    monitor_cmd,
    privacy_cmd,
    programs_cmd,
    schedule_cmd,
)
from ratchet.cli.cycle_cmd import cycle
from ratchet.cli.doctor_cmd import doctor
from ratchet.cli.eval_cmd import eval_regression
from ratchet.cli.init_cmd import init
from ratchet.cli.ops_cmd import backup, cleanup, restore
from ratchet.cli.optimize_cmd import optimize
from ratchet.cli.output import err_console
from ratchet.cli.run_cmds import evaluate, predict
from ratchet.cli.serve_cmds import loadtest, serve, ui
from ratchet.cli.state import CliState
from ratchet.errors import RatchetError
from ratchet.version import __version__


class RatchetGroup(TyperGroup):
    """The root command group: a :class:`RatchetError` becomes a one-line message and exit code 2."""

    def invoke(self, ctx: typer.Context) -> object:
        try:
            return super().invoke(ctx)
        except RatchetError as exc:
            err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None


app = typer.Typer(
    name="ratchet",
    cls=RatchetGroup,
    help="Continuous, safe improvement of DSPy programs in production.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"ratchet {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", envvar="RATCHET_CONFIG",
                                       help="ratchet.toml to use (default: ./ratchet.toml)"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="log debug messages"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                 help="print the version and exit"),
) -> None:
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # DSPy warns per call (e.g. truncation); summaries report what matters
        logging.getLogger("dspy").setLevel(logging.ERROR)
    set_audit_defaults(actor=operator_actor(), source="cli")  # who the audit log names for this command
    ctx.obj = CliState(config_path=config)


app.command("init")(init)
app.command("doctor")(doctor)
app.command("predict")(predict)
app.command("eval")(evaluate)
app.command("eval-regression")(eval_regression)
app.command("serve")(serve)
app.command("ui")(ui)
app.command("loadtest")(loadtest)
app.command("optimize")(optimize)
app.command("cycle")(cycle)
app.command("cleanup")(cleanup)
app.command("backup")(backup)
app.command("restore")(restore)
app.add_typer(config_cmd.app, name="config")
app.add_typer(programs_cmd.app, name="programs")
app.add_typer(ab_cmd.app, name="ab")
app.add_typer(controller_cmd.app, name="controller")
app.add_typer(dataset_cmd.app, name="dataset")
app.add_typer(golden_cmd.app, name="golden")
app.add_typer(collect_cmd.app, name="collect")
app.add_typer(data_cmd.app, name="data")
app.add_typer(schedule_cmd.app, name="schedule")
app.add_typer(monitor_cmd.app, name="monitor")
app.add_typer(canary_cmd.app, name="canary")
app.add_typer(audit_cmd.app, name="audit")
app.add_typer(keys_cmd.app, name="keys")
app.add_typer(privacy_cmd.app, name="privacy")
app.add_typer(annotate_cmd.app, name="annotate")
app.add_typer(flywheel_cmd.app, name="flywheel")
app.command("status")(monitor_cmd.status)


def main() -> None:
    """Entry point of the ``ratchet`` command."""
    app()
