"""``ratchet controller``: the process that watches every live experiment (and whether one is running)."""

from __future__ import annotations

import signal
import threading
from typing import Any

import typer

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state

app = typer.Typer(help="The rollout controller: checks every live experiment until stopped.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    interval: float | None = typer.Option(None, "--interval", min=0.05,
                                          help="seconds between checks (default: rollout.check_interval_s)"),
    once: bool = typer.Option(False, "--once", help="one pass, then exit (as cron would run it)"),
    as_json: bool = typer.Option(False, "--json", help="with --once: the pass as JSON"),
) -> None:
    """Check every live experiment every interval until SIGTERM or Ctrl-C (one controller acts at a time).

    A second `ratchet controller run` on any host stands by and takes over within
    rollout.lease_ttl_s of the first one's death. Started by `ratchet schedule run`, the systemd unit
    deploy/systemd/ratchet-controller.service or deploy/kubernetes/controller.yaml.
    """
    from ratchet.loop.supervisor import Supervisor

    state = get_state(ctx)
    supervisor = Supervisor(state.settings, state.registry, interval_s=interval)
    if once:
        tick = supervisor.tick()
        if as_json:
            print_json({"owner": supervisor.owner, **tick.to_dict()})
            return
        role = "acting" if tick.leader else "standing by (another controller holds the lease)"
        console.print(f"controller {supervisor.owner}: {role}", highlight=False)
        for experiment_id, decision in tick.decisions.items():
            console.print(f"  {experiment_id}: {decision.action} — {decision.reason}", highlight=False)
        for experiment_id, error in tick.errors.items():
            console.print(f"  [red]{experiment_id or 'controller'}: {error}[/]", highlight=False)
        return
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    console.print(f"controller {supervisor.owner}: checking live experiments every {supervisor.interval_s:g} s; "
                  "stop with Ctrl-C or SIGTERM", highlight=False)
    try:
        supervisor.run(stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    console.print("controller stopped")


@app.command("status")
def status(ctx: typer.Context, as_json: bool = typer.Option(False, "--json")) -> None:
    """Who holds the controller lease and when it last beat (exit 1 when experiments are live and it is down)."""
    from ratchet.monitor.checks.controller import check_controller
    from ratchet.store.db import StateDB

    result = check_controller(db=StateDB.connect(get_state(ctx).settings))
    summary: dict[str, Any] = result.summary
    if as_json:
        print_json(summary)
    elif summary.get("owner"):
        state = "alive" if summary["alive"] else "DOWN"
        console.print(f"controller {summary['owner']}: {state}, last heartbeat {summary['heartbeat_age_s']:.0f} s "
                      f"ago; {len(summary['live_experiments'])} live experiment(s)", highlight=False)
    else:
        console.print(f"no controller has run; {len(summary['live_experiments'])} live experiment(s)")
    if result.alerts:
        raise typer.Exit(1)
