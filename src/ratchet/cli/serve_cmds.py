"""``ratchet serve`` (the HTTP API and the web console), ``ratchet ui`` (the console alone) and ``ratchet loadtest``
(traffic replay)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import typer
from rich.table import Table

from ratchet.cli.output import console, err_console, print_json, progress_bar
from ratchet.cli.state import get_state
from ratchet.config import Settings
from ratchet.data.files import labelled_examples
from ratchet.data.sampling import seeded_sample
from ratchet.errors import DataError
from ratchet.store.private import make_private_dir


def serve(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="default: serve.host"),
    port: int | None = typer.Option(None, "--port", help="default: serve.port"),
    workers: int | None = typer.Option(None, "--workers", min=1, help="processes (default: serve.workers)"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve every registered program over HTTP (FastAPI under uvicorn).

    The embedded model is self-tested first (in a child process, remembered per machine): when it
    cannot run here the command exits with the reason instead of crashing on the first request.
    `/health` answers once the port is open; `/ready` once the model and programs are warm.
    """
    import uvicorn

    from ratchet.lm.setup import build_lms

    state = get_state(ctx)
    settings = state.settings
    engine = build_lms(settings.lm).prepare().engine
    if engine is not None and engine.self_test_result is not None:
        test, buffers = engine.self_test_result, engine.extra_buffers
        err_console.print(f"[dim]model self-test passed{' (remembered)' if test.cached else ''}; extra buffer "
                          f"types {'on' if buffers and buffers.enabled else 'off'}"
                          f" ({buffers.reason if buffers else ''})[/]", highlight=False)
    host = host or settings.serve.host
    port = port or settings.serve.port
    workers = workers or settings.serve.workers
    settings.serve.host = host
    os.environ["RATCHET_SERVE__HOST"] = host  # worker processes build their settings (and auth) from the environment
    _announce_auth(settings)
    _expose_textfiles(settings.home_dir)
    if workers == 1:
        from ratchet.console import create_server

        uvicorn.run(create_server(settings), host=host, port=port, log_level=log_level)
        return
    # Several processes: each builds its own app; Prometheus samples go to a shared directory.
    metrics_dir = settings.home_dir / "run" / "prometheus"
    shutil.rmtree(metrics_dir, ignore_errors=True)
    make_private_dir(metrics_dir)  # the first thing under a new home: it must not create the home world-readable
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    if settings.config_file:
        os.environ["RATCHET_CONFIG"] = str(settings.config_file)
    uvicorn.run("ratchet.console.server:server_from_env", factory=True, host=host, port=port, workers=workers,
                log_level=log_level)


def ui(
    ctx: typer.Context,
    host: str | None = typer.Option(None, "--host", help="default: serve.host (a non-loopback address needs keys)"),
    port: int = typer.Option(8080, "--port", help="the console's port"),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """The web console alone, under /ui (no program is served, no model loaded): the same pages, keys and roles as
    the console `ratchet serve` mounts next to the API."""
    import uvicorn

    from ratchet.console import create_console_app

    settings = get_state(ctx).settings
    settings.serve.host = host or settings.serve.host
    _announce_auth(settings)
    console.print(f"console: http://{settings.serve.host}:{port}/ui", highlight=False)
    uvicorn.run(create_console_app(settings), host=settings.serve.host, port=port, log_level=log_level)


def _announce_auth(settings: Settings) -> None:
    """Say whether keys are required; an open server reachable from other hosts is logged and audited."""
    from ratchet.audit import audit
    from ratchet.auth import list_keys
    from ratchet.serve.auth import auth_required, is_loopback
    from ratchet.store.db import StateDB

    host = settings.serve.host
    if auth_required(settings):
        active = len(list_keys(StateDB.connect(settings)))
        err_console.print(f"[dim]API keys required (auth.mode={settings.auth.mode}, binding {host}); "
                          f"{active} active key(s)[/]", highlight=False)
        if not active:
            err_console.print("[yellow]no active API key[/]: every request will get 401 until you run "
                              "`ratchet keys create --name NAME --role ROLE`", highlight=False)
    elif not is_loopback(host):
        err_console.print(f"[bold yellow]warning[/]: auth.mode=off while binding {host}: anyone who reaches the port "
                          "can call programs, send feedback and read metrics", highlight=False)
        audit(settings, "auth.disabled", target=host, reason="auth.mode=off on a non-loopback address")


def _expose_textfiles(home: Path) -> None:
    """Let /metrics (in this process and in every worker) include the checks' textfiles, e.g. the drift gauges."""
    from ratchet.monitor.drift.exposition import METRICS_DIRNAME
    from ratchet.serve.metrics import TEXTFILE_DIR_ENV

    os.environ.setdefault(TEXTFILE_DIR_ENV, str(home / METRICS_DIRNAME))


def loadtest(
    ctx: typer.Context,
    signature: str = typer.Option(..., "--signature", help="registered signature to call"),
    data: Path | None = typer.Option(None, "--data", help="labelled examples (default: bundled test split)"),
    queries: int = typer.Option(100, "--queries", min=1),
    concurrency: int = typer.Option(4, "--concurrency", min=1),
    target: str | None = typer.Option(None, "--target", help="server URL; default: in-process runtime"),
    api_key: str | None = typer.Option(None, "--api-key", envvar="RATCHET_API_KEY", show_default=False,
                                       help="with --target: a key with the predict (and feedback) role"),
    feedback_from_labels: bool = typer.Option(False, "--feedback-from-labels",
                                              help="score each answer against its label and send feedback"),
    corrections: bool = typer.Option(False, "--corrections", help="with --feedback-from-labels: send the label "
                                                                  "as the correction of a wrong answer"),
    baseline: Path | None = typer.Option(None, "--baseline", help="a previous --json report: fail on a p95 "
                                                                   "regression over 20 %"),
    save: Path | None = typer.Option(None, "--save", help="write the report JSON here (a future baseline)"),
    seed: int = typer.Option(0, "--seed", help="order of the replayed examples"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Replay labelled examples as traffic; report throughput, p50/p95/p99 latency and errors."""
    from ratchet.serve.loadtest import compare_to_baseline, run_http, run_inprocess

    state = get_state(ctx)
    spec = state.registry.get(signature)
    loaded = labelled_examples(spec, data)
    baseline_report = _read_report(baseline) if baseline else None
    examples = seeded_sample(loaded.examples, None, seed)

    with progress_bar(enabled=not as_json) as progress:
        task = progress.add_task(f"loadtest {signature}", total=queries, status="")

        def done() -> None:
            progress.advance(task)

        if target:
            report = run_http(target, spec, examples, queries=queries, concurrency=concurrency,
                              feedback_from_labels=feedback_from_labels, corrections=corrections, on_done=done,
                              api_key=api_key)
        else:
            from ratchet.serve.runtime import Runtime

            with Runtime(state.settings, registry=state.registry) as runtime:
                runtime.warm_up()
                report = run_inprocess(runtime, spec, examples, queries=queries, concurrency=concurrency,
                                       feedback_from_labels=feedback_from_labels, corrections=corrections,
                                       on_done=done)

    result = report.to_dict()
    if baseline_report is not None:
        result["baseline"] = compare_to_baseline(result, baseline_report)
    if save:
        save.parent.mkdir(parents=True, exist_ok=True)
        save.write_text(json.dumps(result, indent=2) + "\n")
    if as_json:
        print_json(result)
    else:
        _print(result)
    if result.get("baseline", {}).get("regressed"):
        raise typer.Exit(1)


def _read_report(path: Path) -> dict:
    try:
        report = json.loads(path.read_text())
        float(report["latency_ms"]["p95"])
        return report
    except FileNotFoundError:
        raise DataError(f"--baseline {path}: no such file") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise DataError(f"--baseline {path}: not a loadtest report ({exc})") from None


def _print(result: dict) -> None:
    lat = result["latency_ms"]
    table = Table(title=f"loadtest {result['signature']} → {result['target']}", title_justify="left", box=None)
    table.add_column("measure")
    table.add_column("value", justify="right")
    table.add_row("requests", f"{result['completed']} of {result['queries']} (concurrency {result['concurrency']})")
    table.add_row("throughput", f"{result['throughput_rps']:.1f} req/s")
    table.add_row("latency p50 / p95 / p99", f"{lat['p50']:.1f} / {lat['p95']:.1f} / {lat['p99']:.1f} ms")
    table.add_row("errors", f"{result['errors']} ({result['error_rate']:.1%}) {result['errors_by_type'] or ''}")
    table.add_row("arms", ", ".join(f"{k}: {v}" for k, v in sorted(result["arms"].items())))
    if result["feedback_sent"] or result["mean_score"] is not None:
        table.add_row("feedback sent / mean score", f"{result['feedback_sent']} / {result['mean_score']}")
    if "baseline" in result:
        b = result["baseline"]
        verdict = "[red]REGRESSED[/]" if b["regressed"] else "[green]ok[/]"
        table.add_row("p95 vs baseline", f"{b['baseline_p95_ms']:.1f} → {b['p95_ms']:.1f} ms "
                                         f"({b['change']:+.1%}) {verdict}")
    console.print(table)
