"""``ratchet monitor``: checks that alert on Slack/e-mail/webhook/file/log, the dashboard; and ``ratchet status``.

Exit codes of the ``check-*`` commands follow the worst level found::

    0  nothing, or info only       2  error
    1  warning                     3  critical

(A configuration error also exits 2, with a one-line message on stderr.)
"""

from __future__ import annotations

import sys
from datetime import datetime
from typing import Any

import typer
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json
from ratchet.cli.state import get_state
from ratchet.monitor.alerts import level_rank
from ratchet.monitor.state import iso

app = typer.Typer(help="Monitoring: checks with alerts on every channel, and the dashboard. "
                  "Check commands exit 0 (nothing or info), 1 (warning), 2 (error), 3 (critical).",
                  no_args_is_help=True)

_JSON = typer.Option(False, "--json", help="machine-readable output")
_NO_DISPATCH = typer.Option(False, "--no-dispatch", help="evaluate only: send nothing, change no state")
LEVEL_STYLES = {"info": "cyan", "warning": "yellow", "error": "red", "critical": "bold white on red"}
_EXIT_HELP = "Exit code: 0 nothing/info, 1 warning, 2 error, 3 critical."


def _run(ctx: typer.Context, names: list[str], as_json: bool, no_dispatch: bool, signature: str | None = None
         ) -> None:
    from ratchet.monitor import AlertDispatcher
    from ratchet.monitor.checks import run_checks

    state = get_state(ctx)
    settings = state.settings
    registry = None
    if {"dataset_quality", "drift", "canary", "golden"} & set(names):
        registry = state.registry
        if signature is not None:
            registry.get(signature)  # an unknown name: exit 2 with the registry's message
    dispatcher = None if no_dispatch else AlertDispatcher.from_settings(settings)
    run = run_checks(settings, names, dispatcher, signature=signature, registry=registry)
    if as_json:
        print_json(run.to_dict())
    else:
        _print_run(run)
    if run.exit_code:
        raise typer.Exit(run.exit_code)


@app.command("check-all", epilog=_EXIT_HELP)
def check_all(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Run every check (orchestration, A/B tests, dataset quality, live SLOs, drift, canaries, the audit log's
    chain, API keys, the annotation backlog, golden-set regressions) and send what is due."""
    from ratchet.monitor.checks import CHECKS

    _run(ctx, list(CHECKS), as_json, no_dispatch)


@app.command("check-orchestration", epilog=_EXIT_HELP)
def check_orchestration(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Consecutive failed cycles, no improvement deployed for months, no runs at all."""
    _run(ctx, ["orchestration"], as_json, no_dispatch)


@app.command("check-ab-tests", epilog=_EXIT_HELP)
def check_ab_tests(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Rollbacks (alerted once), long-running experiments, traffic that does not match its split."""
    _run(ctx, ["ab_tests"], as_json, no_dispatch)


@app.command("check-dataset-quality", epilog=_EXIT_HELP)
def check_dataset_quality(
    ctx: typer.Context,
    signature: str | None = typer.Option(None, "--signature", "-s", help="one signature (default: all)"),
    as_json: bool = _JSON,
    no_dispatch: bool = _NO_DISPATCH,
) -> None:
    """The latest dataset version's quality against the previous version's."""
    _run(ctx, ["dataset_quality"], as_json, no_dispatch, signature)


@app.command("check-controller", epilog=_EXIT_HELP)
def check_controller(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Critical when experiments are live and no rollout controller has beaten its lease for 5 minutes."""
    _run(ctx, ["controller"], as_json, no_dispatch)


@app.command("check-slo", epilog=_EXIT_HELP)
def check_slo(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Live success rate, p50/p95/p99 latency, tokens and cost per request, and cost per hour against the thresholds."""
    _run(ctx, ["slo"], as_json, no_dispatch)


@app.command("check-drift", epilog=_EXIT_HELP)
def check_drift(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Live inputs and outputs of each signature against its production version's training data: output label
    PSI and the share of novel inputs. When dispatching, also writes <home>/metrics/ for Prometheus."""
    _run(ctx, ["drift"], as_json, no_dispatch)


@app.command("check-canary", epilog=_EXIT_HELP)
def check_canary(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Production's canary score against its own trailing runs (from what `ratchet canary run` and the controller
    stored; runs no model), and canaries that stopped running."""
    _run(ctx, ["canary"], as_json, no_dispatch)


@app.command("check-audit", epilog=_EXIT_HELP)
def check_audit(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """The audit log's hash chain, end to end (`ratchet audit verify`): critical when an entry was edited, removed,
    inserted or reordered, or a daily file truncated or deleted."""
    _run(ctx, ["audit"], as_json, no_dispatch)


@app.command("check-keys", epilog=_EXIT_HELP)
def check_keys(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """API keys due for rotation (older than auth.max_key_age_days, 90) or unused for auth.max_unused_days (30)."""
    _run(ctx, ["keys"], as_json, no_dispatch)


@app.command("check-annotation", epilog=_EXIT_HELP)
def check_annotation(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Annotation tasks waiting longer than flywheel.max_backlog_age_days (7). When dispatching, also writes the
    backlog and feedback-rate gauges to <home>/metrics/ for Prometheus."""
    _run(ctx, ["annotation"], as_json, no_dispatch)


@app.command("check-golden", epilog=_EXIT_HELP)
def check_golden(ctx: typer.Context, as_json: bool = _JSON, no_dispatch: bool = _NO_DISPATCH) -> None:
    """Versions the newest `ratchet eval-regression` run found significantly worse on their golden set (reads the
    reports, runs no model). When dispatching, also writes the golden-score gauges to <home>/metrics/."""
    _run(ctx, ["golden"], as_json, no_dispatch)


@app.command("dashboard")
def dashboard(ctx: typer.Context, as_json: bool = _JSON) -> None:
    """The dashboard: JSON with --json or when piped (`ratchet monitor dashboard | jq .`), else a terminal view."""
    _show(ctx, as_json or not sys.stdout.isatty())


def status(ctx: typer.Context, as_json: bool = _JSON) -> None:
    """Everything at a glance: cycles, experiments and their traffic, datasets, live SLOs, alerts."""
    _show(ctx, as_json)


# -- rendering ---------------------------------------------------------------------------------------------


def _show(ctx: typer.Context, as_json: bool) -> None:
    from ratchet.monitor.dashboard import build_dashboard

    state = get_state(ctx)
    data = build_dashboard(state.settings)  # a section that cannot be read says so; the others still show
    if as_json:
        print_json(data)
        return
    _print_dashboard(data, state.settings)


def _level(level: str | None) -> str:
    if not level:
        return "[green]ok[/]"
    return f"[{LEVEL_STYLES.get(level, 'default')}]{level}[/]"


def _print_run(run: Any) -> None:
    table = Table(box=None, show_header=False, pad_edge=False)
    for result in run.results:
        found = result.found
        if result.error:
            outcome = f"[red]could not run:[/] {result.error}"
        elif found:
            worst = max(found, key=lambda a: level_rank(a.level)).level
            outcome = f"{len(found)} alert{'s' if len(found) != 1 else ''} (worst: {_level(worst)})"
        else:
            outcome = "[green]ok[/]"
        table.add_row(f"[bold]{result.name}[/]", outcome, f"[dim]{result.seconds:.2f} s[/]")
    console.print(table)
    for result in run.results:
        if result.name == "drift" and not result.error:
            _print_drift(result.summary)
        if result.name == "canary" and not result.error:
            _print_canary(result.summary)
    if run.alerts:
        alerts = Table(box=None, pad_edge=False)
        for column in ("level", "alert", "message"):
            alerts.add_column(column, overflow="fold")
        for alert in sorted(run.alerts, key=lambda a: -level_rank(a.level)):
            alerts.add_row(_level(alert.level), alert.title, alert.message)
        console.print(alerts)
    if run.dispatched:
        for delivery in run.deliveries:
            if delivery.action == "suppressed":
                console.print(f"  [dim]{delivery.alert.title}: not re-sent ({delivery.note})[/]", highlight=False)
                continue
            outcomes = " · ".join(f"{r.channel} {r.describe()}" for r in delivery.results) or delivery.note
            if not delivery.delivered:
                outcomes = f"[red]{outcomes}[/]"
            console.print(f"  → {delivery.alert.title} ({delivery.action}): {outcomes}", highlight=False)
            if not delivery.delivered:
                err_console.print(f"[bold red]warning:[/] alert {delivery.alert.title!r} reached no channel",
                                  highlight=False)
    else:
        console.print("  [dim]evaluated only (--no-dispatch): nothing sent, state unchanged[/]")
    console.print(f"worst level: {_level(run.worst_level) if run.worst_level else 'none'} → exit {run.exit_code}")


def _when(stamp: str | None) -> str:
    if not stamp:
        return "–"
    try:
        return datetime.fromisoformat(stamp).strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp


def _print_dashboard(data: dict[str, Any], settings: Any) -> None:
    console.print(f"[bold]Ratchet status[/] · {_when(data['timestamp'])} UTC · home {settings.home_dir}",
                  highlight=False)
    orch = data["orchestration"]
    if orch.get("last_run"):
        line = (f"last run {orch['last_run']} ({orch.get('last_status')}) · "
                f"last success {_when(orch.get('last_success'))} · ")
        failures = orch.get("consecutive_failures", 0)
        line += f"[red]{failures} consecutive failure{'s' if failures != 1 else ''}[/]" if failures else "no failures"
    else:
        line = "no runs yet (`ratchet cycle`)"
    improvement = orch.get("last_improvement")
    if improvement:
        percent = improvement.get("improvement_percent")
        line += f" · last improvement {improvement['run_id']}" + (f" (+{percent:g} %)" if percent is not None else "")
    if orch.get("last_trigger"):
        line += f" · started by: {orch['last_trigger']}"
    console.print(f"\n[bold]Optimization cycles[/]  {line}", highlight=False)
    _section_error(orch)
    triggers = data.get("triggers") or {}
    if triggers.get("evaluated_at"):
        evaluated = _when(iso(triggers["evaluated_at"]))
        table = Table(box=None, pad_edge=False, title=f"live triggers (evaluated {evaluated})", title_justify="left")
        for column in ("signature", "trigger", "why"):
            table.add_column(column, overflow="fold")
        for name, verdict in (triggers.get("signatures") or {}).items():
            state = ("[bold yellow]started a cycle[/]" if name in (triggers.get("launched") or {}) else
                     "[yellow]held[/]" if verdict.get("blocked") else "quiet")
            numbers = verdict.get("numbers") or {}
            why = verdict.get("reason") or (f"{numbers.get('new_feedback', 0)} new feedback of "
                                            f"{numbers.get('feedback_volume_threshold')}; no degradation")
            if verdict.get("blocked"):
                why += f" — held: {verdict['blocked']}"
            table.add_row(name, state, why)
        console.print(table)

    controller = data.get("controller") or {}
    if controller.get("owner"):
        beat = f"last heartbeat {controller['heartbeat_age_s']:.0f} s ago"
        state = f"[green]alive[/] ({controller['owner']}, {beat})" if controller.get("alive") else \
            f"[bold red]down[/] ({controller['owner']}, {beat})"
    else:
        state = "never ran (`ratchet controller run`)"
    console.print(f"\n[bold]Rollout controller[/]  {state}", highlight=False)
    _section_error(controller)

    ab = data["ab_tests"]
    console.print(f"\n[bold]Experiments[/]  {ab.get('shadow', 0)} in shadow · {ab['active']} running · "
                  f"{ab['paused']} paused · {ab['completed']} "
                  f"promoted · {ab['rolled_back']} rolled back", highlight=False)
    _section_error(ab)
    if ab.get("experiments"):
        table = Table(box=None, pad_edge=False)
        for column in ("experiment", "signature", "baseline → candidate", "status", "stage", "configured",
                       "observed", "requests (b/c)"):
            table.add_column(column, overflow="fold")
        for exp in ab["experiments"]:
            traffic = exp["traffic"]
            observed = traffic["observed_percent"]
            table.add_row(exp["experiment_id"], exp["signature"],
                          f"{exp['baseline_version']} → {exp['candidate_version']}", exp["status"],
                          "shadow" if exp["status"] == "shadow" else f"{exp['stage']}/{len(exp['stages'])}",
                          f"{traffic['configured_percent']:g} %",
                          "–" if observed is None else f"{observed:g} %",
                          f"{traffic['baseline_requests']}/{traffic['candidate_requests']}")
        console.print(table)

    datasets = {k: v for k, v in data["datasets"].items() if isinstance(v, dict)}
    console.print(f"\n[bold]Datasets[/]  {len(datasets)} signature(s)")
    _section_error(data["datasets"])
    if datasets:
        table = Table(box=None, pad_edge=False)
        for column in ("signature", "version", "examples", "quality", "sources", "versions"):
            table.add_column(column)
        for name, info in datasets.items():
            quality = info.get("quality")
            table.add_row(name, info["version"], str(info.get("examples") or 0),
                          "–" if quality is None else f"{quality:.1f}", ", ".join(info.get("sources") or []),
                          str(info.get("versions", "")))
        console.print(table)

    slo = data["slo"]
    thresholds = settings.thresholds
    console.print(f"\n[bold]Live service levels[/]  last {slo['window_minutes']:g} min")
    _section_error(slo)
    if slo.get("signatures"):
        table = Table(box=None, pad_edge=False)
        for column in ("signature", "arm", "requests", "success", "p95", "cost/hour"):
            table.add_column(column, justify="right" if column not in ("signature", "arm") else "left")
        for name, arms in slo["signatures"].items():
            shown = arms if len(arms) > 2 else {k: v for k, v in arms.items() if k == "all"}  # arms of an experiment
            for arm, level in shown.items():
                success = f"{level['success_rate']:.1%}"
                if level["success_rate"] < thresholds.min_success_rate:
                    success = f"[red]{success}[/]"
                p95 = f"{level['latency_p95_ms']:.0f} ms"
                if level["latency_p95_ms"] > thresholds.latency_p95_ms:
                    p95 = f"[yellow]{p95}[/]"
                table.add_row(name, arm, str(level["requests"]), success, p95, f"${level['cost_per_hour_usd']:.2f}")
        console.print(table)
    elif not slo.get("error"):
        console.print("  [dim]no traffic in the window[/]")

    drift = data.get("drift") or {}
    console.print(f"\n[bold]Drift[/]  last check {_when(drift.get('checked_at'))} · window "
                  f"{drift.get('window_hours', 0):g} h", highlight=False)
    _section_error(drift)
    if drift.get("signatures"):
        _print_drift(drift)
    elif not drift.get("error"):
        console.print("  [dim]no drift check yet (`ratchet monitor check-drift`)[/]")

    canaries = data.get("canaries") or {}
    console.print("\n[bold]Canaries[/]  newest run of each version", highlight=False)
    _section_error(canaries)
    if canaries.get("runs"):
        table = Table(box=None, pad_edge=False)
        for column in ("signature", "version", "score", "probes", "failed", "run"):
            table.add_column(column, no_wrap=True)
        for run in canaries["runs"]:
            table.add_row(run["signature"], run["version"], f"{run['score']:.3f}", str(run["n"]),
                          str(run["errors"] + run["parse_failures"]), _when(run["at"]))
        console.print(table)
    elif not canaries.get("error"):
        console.print("  [dim]no canary run yet (`ratchet canary run`, or the controller when due)[/]")

    alerts = data["alerts"]
    console.print(f"\n[bold]Alerts[/]  last check {_when(alerts.get('last_check'))} · "
                  f"{len(alerts.get('active') or [])} active", highlight=False)
    _section_error(alerts)
    for active in alerts.get("active") or []:
        console.print(f"  {_level(active.get('level'))} {active.get('title')}: {active.get('message')} "
                      f"[dim](since {_when(active.get('since'))})[/]", highlight=False)
    recent = alerts.get("recent_alerts") or []
    if recent:
        console.print("  [dim]recent:[/]")
        for alert in recent:
            mark = "" if alert.get("delivered", True) else " [red](not delivered)[/]"
            console.print(f"  [dim]{_when(alert.get('timestamp'))}[/] {_level(alert.get('level'))} "
                          f"{alert.get('title')}{mark}", highlight=False)


def _print_drift(drift: dict[str, Any]) -> None:
    """Per signature: drift found, live calls, output PSI, novel share live vs held-out, the reference (from a
    check's summary or the dashboard's section: both have these numbers)."""
    table = Table(box=None, pad_edge=False)
    table.add_column("signature", no_wrap=True)
    for column in ("drift", "calls", "output PSI", "novel live / held-out", "reference"):
        table.add_column(column, overflow="fold")
    waiting = []
    for name, sig in (drift.get("signatures") or {}).items():
        output, inputs = sig.get("output") or {}, sig.get("input") or {}
        psi = sig.get("output_psi", output.get("psi"))
        live_share = sig.get("live_novel_share", inputs.get("live_novel_share"))
        held_share = sig.get("reference_novel_share", inputs.get("reference_novel_share"))
        status = sig.get("status")
        if status not in ("ok", "drift"):
            waiting.append(f"{name}: {sig.get('reason') or status}")
        shown = (f"[yellow]{', '.join(sig.get('flagged') or [])}[/]" if status == "drift" else
                 "[green]none[/]" if status == "ok" else "[dim]not enough data[/]")
        table.add_row(name, shown, str(sig.get("live_n") or 0), "–" if psi is None else f"{psi:.3f}",
                      "–" if live_share is None else f"{live_share:.1%} / {held_share:.1%}",
                      _reference(sig.get("reference")))
    console.print(table)
    for line in waiting:
        console.print(f"  [dim]{line}[/]", highlight=False)


def _print_canary(summary: dict[str, Any]) -> None:
    from ratchet.cli.canary_cmd import print_degradation

    print_degradation(summary.get("signatures") or {})


def _reference(reference: dict[str, Any] | None) -> str:
    if not reference:
        return "–"
    if reference.get("kind") == "production":
        return f"{reference.get('dataset_version')} (production {reference.get('program_version')})"
    if reference.get("kind") == "latest_dataset":
        return f"{reference.get('dataset_version')} (latest dataset)"
    return "bundled train data"


def _section_error(section: dict[str, Any]) -> None:
    if section.get("error"):
        console.print(f"  [red]unavailable:[/] {section['error']}", highlight=False)
