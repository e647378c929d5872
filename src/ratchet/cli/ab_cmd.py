"""``ratchet ab``: start, watch and steer A/B experiments."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import console, print_json
from ratchet.cli.state import get_state

app = typer.Typer(help="Gradual A/B rollouts with automatic rollback.", no_args_is_help=True)

ExperimentOpt = typer.Option(..., "--experiment-id", help="the experiment")


def _live() -> tuple[str, ...]:
    from ratchet.rollout.experiments import LIVE

    return LIVE


def _controller(ctx: typer.Context):
    from ratchet.loop.rollouts import rollout_controller

    state = get_state(ctx)
    return rollout_controller(state.settings, state.registry)


def _stages(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        return [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"--stages must be comma-separated percents, got {value!r}") from None


def _when(ts: float | None) -> str:
    return "" if ts is None else datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command("start")
def start(
    ctx: typer.Context,
    signature: str = typer.Option(..., "--signature"),
    candidate: str = typer.Option(..., "--candidate", help="the version to roll out"),
    experiment_id: str = ExperimentOpt,
    baseline: str | None = typer.Option(None, "--baseline", help="default: the production version"),
    stages: str | None = typer.Option(None, "--stages", help="e.g. 10,25,50,75,100 (default from config)"),
    min_stage_minutes: float | None = typer.Option(None, "--min-stage-minutes", min=0),
    min_stage_requests: int | None = typer.Option(None, "--min-stage-requests", min=1),
    shadow: bool | None = typer.Option(None, "--shadow/--no-shadow",
                                       help="begin in shadow: the candidate answers unseen first "
                                            "(default: rollout.start_in_shadow)"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Start an experiment: in shadow, or with the first stage's share of traffic at once."""
    exp = _controller(ctx).start(signature, candidate, experiment_id=experiment_id, baseline=baseline,
                                 stages=_stages(stages), min_stage_minutes=min_stage_minutes,
                                 min_stage_requests=min_stage_requests, shadow=shadow)
    if as_json:
        print_json(exp.to_dict())
        return
    now = (f"now in shadow on {exp.shadow_share:.0%} of requests" if exp.status == "shadow"
           else f"now {exp.stage_percent} %")
    console.print(f"started [bold]{exp.experiment_id}[/]: {exp.signature} {exp.baseline_version} → "
                  f"{exp.candidate_version}, stages {exp.stages} ({now}), "
                  f"each ≥ {exp.min_stage_minutes:g} min and ≥ {exp.min_stage_requests} candidate requests")


@app.command("monitor")
def monitor(
    ctx: typer.Context,
    experiment_id: str = ExperimentOpt,
    daemon: bool = typer.Option(False, "--daemon", help="keep checking until the experiment ends"),
    interval: float | None = typer.Option(None, "--interval", min=0.1, help="seconds between checks"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check an experiment and act: advance, promote or roll back (once, or until it ends with --daemon)."""
    from ratchet.rollout import monitor_experiment

    controller = _controller(ctx)

    def report(exp: Any, decision: Any) -> None:
        if as_json:
            print_json({"experiment_id": exp.experiment_id, "status": exp.status, "stage_percent": exp.stage_percent,
                        "decision": decision.to_dict()})
            return
        colour = {"rollback": "red", "promote": "green", "advance": "cyan"}.get(decision.action, "dim")
        console.print(f"{datetime.now(UTC).strftime('%H:%M:%S')} {exp.experiment_id} [{colour}]{decision.action}[/]"
                      f" → {exp.status} at {exp.stage_percent} %: {decision.reason}", highlight=False)

    final = monitor_experiment(controller, experiment_id, daemon=daemon, interval_s=interval, on_decision=report)
    if daemon and not as_json:
        console.print(f"[bold]{final.experiment_id}[/] ended: {final.status} ({final.reason})")


@app.command("pause")
def pause(ctx: typer.Context, experiment_id: str = ExperimentOpt,
          reason: str = typer.Option("paused by operator", "--reason")) -> None:
    """Hold traffic at the current split: no advancing or promotion (rollback triggers still apply)."""
    exp = _controller(ctx).pause(experiment_id, reason=reason)
    console.print(f"{exp.experiment_id} paused at {exp.stage_percent} % candidate traffic")


@app.command("resume")
def resume(ctx: typer.Context, experiment_id: str = ExperimentOpt,
           reason: str = typer.Option("resumed by operator", "--reason")) -> None:
    """Continue a paused experiment (paused time does not count toward the stage's minimum)."""
    exp = _controller(ctx).resume(experiment_id, reason=reason)
    console.print(f"{exp.experiment_id} running at {exp.stage_percent} %")


@app.command("promote")
def promote(ctx: typer.Context, experiment_id: str = ExperimentOpt,
            reason: str = typer.Option("promoted by operator", "--reason")) -> None:
    """Promote the candidate now: it becomes the production version and gets all traffic."""
    exp = _controller(ctx).promote(experiment_id, reason=reason)
    console.print(f"{exp.experiment_id} promoted: {exp.signature} production = [bold]{exp.candidate_version}[/]")


@app.command("rollback")
def rollback(ctx: typer.Context, experiment_id: str = ExperimentOpt,
             reason: str = typer.Option(..., "--reason", help="why (recorded in the event and the alert)")) -> None:
    """Roll back now: all traffic returns to the baseline."""
    exp = _controller(ctx).rollback(experiment_id, reason=reason)
    console.print(f"{exp.experiment_id} rolled back: all {exp.signature} traffic → {exp.baseline_version}")


@app.command("rollback-all")
def rollback_all(ctx: typer.Context,
                 reason: str = typer.Option(..., "--reason", help="why (recorded in every event and alert)")) -> None:
    """Emergency: roll back every live experiment."""
    rolled = _controller(ctx).rollback_all(reason=reason)
    console.print(f"rolled back {len(rolled)} experiment(s): {', '.join(e.experiment_id for e in rolled) or 'none'}")


@app.command("status")
def status(ctx: typer.Context, experiment_id: str | None = typer.Option(None, "--experiment-id"),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """An experiment's state, stage progress, per-arm metrics, trigger checks and events."""
    controller = _controller(ctx)
    experiments = ([controller.store.get(experiment_id)] if experiment_id
                   else controller.store.list(statuses=_live()))
    out = []
    for exp in experiments:
        decision = controller.evaluate(exp) if exp.live else None
        out.append({**exp.to_dict(), "decision": decision.to_dict() if decision else None,
                    "events": [e.to_dict() for e in controller.store.events(exp.experiment_id)]})
    if as_json:
        print_json(out if experiment_id is None else out[0])
        return
    if not out:
        console.print("no live experiments")
    for item in out:
        _print_status(item)


@app.command("list")
def list_experiments(ctx: typer.Context, signature: str | None = typer.Option(None, "--signature"),
                     as_json: bool = typer.Option(False, "--json")) -> None:
    """Every experiment, newest last."""
    exps = _controller(ctx).store.list(signature=signature)
    if as_json:
        print_json([e.to_dict() for e in exps])
        return
    table = Table(title=f"{len(exps)} experiment(s)", title_justify="left")
    for column in ("experiment", "signature", "baseline → candidate", "status", "traffic", "started", "reason"):
        table.add_column(column, overflow="fold")
    for e in exps:
        table.add_row(e.experiment_id, e.signature, f"{e.baseline_version} → {e.candidate_version}", e.status,
                      f"{e.candidate_share:.0%}", _when(e.created_at), e.reason or "")
    console.print(table)


def _print_status(item: dict[str, Any]) -> None:
    shadow = (f" · shadow on {item['shadow_share']:.0%} of requests" if item["status"] == "shadow" else "")
    console.print(f"[bold]{item['experiment_id']}[/] {item['signature']}: {item['baseline_version']} → "
                  f"{item['candidate_version']} · [bold]{item['status']}[/] · candidate traffic "
                  f"{item['candidate_share']:.0%}{shadow} · stages {item['stages']}")
    decision = item.get("decision")
    if decision:
        m = decision["metrics"]
        table = Table(box=None)
        for column in ("arm", "requests", "error rate", "mean latency", "p95 latency", "quality (n)"):
            table.add_column(column, justify="right")
        for arm in ("baseline", "candidate", "shadow"):
            if arm not in m:
                continue
            a = m[arm]
            quality = "–" if a["quality_mean"] is None else f"{a['quality_mean']:.3f} ({a['quality_count']})"
            table.add_row(arm, str(a["requests"]), f"{a['error_rate']:.1%}", f"{a['latency_mean_ms']:.0f} ms",
                          f"{a['latency_p95_ms']:.0f} ms", quality)
        console.print(table)
        if "agreement" in m and m["agreement"]["rate"] is not None:
            console.print(f"  shadow agreement with production: {m['agreement']['rate']:.1%} of "
                          f"{m['agreement']['compared']} calls both answered")
        for check in decision["checks"]:
            mark = "[red]FIRED[/]" if check["fired"] else "ok"
            console.print(f"  {check['trigger']}: {mark} — {check['message']}", highlight=False)
        console.print(f"  next: [bold]{decision['action']}[/] — {decision['reason']}", highlight=False)
    for event in item["events"][-8:]:
        console.print(f"  [dim]{_when(event['at'])} {event['actor']} {event['kind']}: {event['reason'] or ''}[/]",
                      highlight=False)
