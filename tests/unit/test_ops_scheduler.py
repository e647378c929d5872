"""`ratchet schedule`: cron settings, the crontab, and jobs that never overlap (in one scheduler or across two)."""

import json
import os
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path

import pytest
import typer
from apscheduler.triggers.interval import IntervalTrigger
from typer.testing import CliRunner

from ratchet.cli import schedule_cmd
from ratchet.cli.main import RatchetGroup
from ratchet.cli.state import CliState
from ratchet.config import Settings, load_settings
from ratchet.errors import ConfigError
from ratchet.ops.scheduler import JOBS, Scheduler, crontab_lines, job_commands, job_triggers
from ratchet.store.jsonl import read_jsonl

runner = CliRunner()

# Appends "start <t>" and "end <t>" lines to the file in argv[1] around a sleep of argv[2] seconds.
SLOW = ("import sys, time\n"
        "with open(sys.argv[1], 'a') as f:\n"
        "    f.write(f'start {time.time()}\\n'); f.flush(); time.sleep(float(sys.argv[2]))\n"
        "    f.write(f'end {time.time()}\\n')\n")


def cli() -> typer.Typer:
    app = typer.Typer(cls=RatchetGroup)

    @app.callback()
    def root(ctx: typer.Context, config: Path | None = typer.Option(None, "--config")) -> None:
        ctx.obj = CliState(config_path=config)

    app.add_typer(schedule_cmd.app, name="schedule")
    return app


def settings_for(tmp_path: Path, **schedule: object) -> Settings:
    schedule.setdefault("run_controller", False)  # tests of the controller ask for it
    lines = ['home = "home"', "[schedule]"] + [f"{k} = {json.dumps(v)}" for k, v in schedule.items()]
    (tmp_path / "ratchet.toml").write_text("\n".join(lines) + "\n")
    return load_settings(tmp_path / "ratchet.toml")


def intervals(marker: Path) -> list[tuple[float, float]]:
    """(start, end) of each run the child processes wrote down; a run still going ends at +inf."""
    runs: list[list[float]] = []
    for line in marker.read_text().splitlines():
        kind, stamp = line.split()
        if kind == "start":
            runs.append([float(stamp), float("inf")])
        else:
            runs[-1][1] = float(stamp)
    return [(a, b) for a, b in runs]


def test_invalid_cron_or_timezone_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"schedule\.checks_cron: invalid cron expression '61 \* \* \* \*'"):
        job_triggers(Settings(schedule={"checks_cron": "61 * * * *"}))
    with pytest.raises(ConfigError, match=r"schedule\.cleanup_cron.*five fields"):
        job_triggers(Settings(schedule={"cleanup_cron": "0 3 *"}))
    with pytest.raises(ConfigError, match=r"schedule\.timezone"):
        job_triggers(Settings(schedule={"timezone": "Mars/Olympus"}))
    result = runner.invoke(cli(), ["--config", str(settings_for(tmp_path, cycle_cron="0 25 * * *").config_file),
                                   "schedule", "crontab"])
    assert result.exit_code == 2
    assert "schedule.cycle_cron" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_job_commands_run_the_same_ratchet_with_the_same_config(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, cycle_args=["--trials", "12", "--signatures", "classify_intent"])
    commands = job_commands(settings)
    assert set(commands) == set(JOBS)
    base = [sys.executable, "-m", "ratchet", "--config", str(tmp_path / "ratchet.toml")]
    assert commands["cycle"] == [*base, "cycle", "--trials", "12", "--signatures", "classify_intent"]
    assert commands["checks"] == [*base, "monitor", "check-all"]
    assert commands["cleanup"] == [*base, "cleanup"]
    assert commands["flywheel"] == [*base, "flywheel", "run", "--week", "last", "--both"]  # resolved when the job runs
    assert commands["eval_regression"] == [*base, "eval-regression"]
    triggers = job_triggers(settings)
    first = triggers["cycle"].get_next_fire_time(None, datetime.now(UTC))
    assert (first.day, first.hour, first.minute) == (1, 2, 0)
    weekly = triggers["flywheel"].get_next_fire_time(None, datetime.now(UTC))
    assert (weekly.isoweekday(), weekly.hour, weekly.minute) == (1, 6, 0)  # Mondays, 06:00: the week just ended
    daily = triggers["eval_regression"].get_next_fire_time(None, datetime.now(UTC))
    assert (daily.hour, daily.minute) == (5, 30)  # every day, before the working day starts


def test_weekdays_mean_what_cron_means(tmp_path: Path) -> None:
    """APScheduler 3 numbers weekdays from Monday = 0; ``schedule run`` must fire on the days crontab lines do."""
    start = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)  # a Sunday

    def days(expression: str, n: int = 7) -> list[str]:
        trigger = job_triggers(Settings(schedule={"cleanup_cron": expression}))["cleanup"]
        fired, at = [], start
        for _ in range(n):
            at = trigger.get_next_fire_time(None, at)
            fired.append(at.strftime("%a"))
            at = at + timedelta(seconds=1)
        return fired

    assert days("0 3 * * 0", 2) == days("0 3 * * 7", 2) == days("0 3 * * sun", 2) == ["Sun", "Sun"]
    assert days("0 6 * * 1", 1) == ["Mon"]
    assert days("0 6 * * 1-5", 5) == ["Mon", "Tue", "Wed", "Thu", "Fri"]
    assert days("0 6 * * */2", 4) == ["Tue", "Thu", "Sat", "Sun"]
    assert days("0 6 * * 5-7", 3) == ["Fri", "Sat", "Sun"]
    with pytest.raises(ConfigError, match=r"schedule\.cleanup_cron.*day of week"):
        job_triggers(Settings(schedule={"cleanup_cron": "0 3 * * 8"}))


def test_crontab_lines(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, checks_cron="*/15 * * * *", timezone="Europe/Berlin")
    lines = crontab_lines(settings)
    entries = [line for line in lines if line and not line.startswith("#") and "=" not in line.split()[0]]
    assert len(entries) == 5
    config = str(tmp_path / "ratchet.toml")
    home = tmp_path / "home"
    by_job = {job: next(e for e in entries if f"schedule run-job {job}" in e) for job in JOBS}
    assert by_job["cycle"].startswith("0 2 1 * * ")
    assert by_job["checks"].startswith("*/15 * * * * ")
    assert by_job["cleanup"].startswith("0 3 * * 0 ")
    assert by_job["flywheel"].startswith("0 6 * * 1 ")
    assert by_job["eval_regression"].startswith("30 5 * * * ")
    for job, entry in by_job.items():
        assert f"--config {config}" in entry and sys.executable in entry
        assert entry.endswith(f">> {home / 'logs' / f'{job}.log'} 2>&1")
    assert "CRON_TZ=Europe/Berlin" in lines
    result = runner.invoke(cli(), ["--config", config, "schedule", "crontab"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == lines


def test_a_slow_job_fired_every_second_never_overlaps_itself_or_another_scheduler(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    marker = tmp_path / "runs.txt"
    commands = {"slow": [sys.executable, "-c", SLOW, str(marker), "2.5"]}
    schedulers = [Scheduler(settings, commands=commands, triggers={"slow": IntervalTrigger(seconds=1)},
                            stop_grace_s=5) for _ in range(2)]
    for scheduler in schedulers:
        scheduler.start()
    assert set(schedulers[0].next_runs()) == {"slow"}
    time.sleep(6.6)
    for scheduler in schedulers:
        scheduler.stop()

    runs = intervals(marker)
    assert len(runs) >= 2
    for (_, end), (start, _) in pairwise(runs):
        assert start >= end, f"runs overlap: {runs}"
    log, stats = read_jsonl(settings.home_dir / "logs" / "schedule.jsonl")
    assert stats.bad_lines == 0
    ends = [r for r in log if r["event"] == "end"]
    starts = [r for r in log if r["event"] == "start"]
    assert len(starts) == len(ends) >= len(runs)  # a child killed at stop before it wrote "start" is logged too
    logged = sorted((datetime.fromisoformat(r["started"]), datetime.fromisoformat(r["ended"])) for r in ends)
    for (_, end), (start, _) in pairwise(logged):
        assert start >= end, f"logged runs overlap: {logged}"
    finished = [r for r in ends if r["status"] == "ok"]
    assert len(finished) >= 1
    assert all(r["exit_code"] == 0 and r["duration_s"] >= 2.5 for r in finished)
    assert all(r["status"] in ("ok", "terminated") for r in ends)
    reasons = [r["reason"] for r in log if r["event"] == "skipped"]
    assert "the previous run is still going" in reasons  # max_instances within one scheduler
    assert any(reason.startswith("another run holds") for reason in reasons)  # the lock across schedulers
    assert (settings.home_dir / "run" / "slow.lock").exists()


def test_run_job_logs_exit_code_and_output(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    commands = {"checks": [sys.executable, "-c", "import sys; print('checked'); sys.exit(3)"]}
    run = Scheduler(settings, commands=commands, triggers={}).run_job("checks")
    assert (run.status, run.exit_code) == ("failed", 3)
    assert "checked" in (settings.home_dir / "logs" / "checks.log").read_text()
    log, _ = read_jsonl(settings.home_dir / "logs" / "schedule.jsonl")
    assert [r["event"] for r in log] == ["start", "end"]
    assert log[1]["exit_code"] == 3 and log[1]["job"] == "checks" and log[1]["ended"] >= log[1]["started"]


def test_sigterm_stops_the_scheduler_and_its_running_job(tmp_path: Path) -> None:
    settings = settings_for(tmp_path)
    marker = tmp_path / "runs.txt"
    scheduler = Scheduler(settings, commands={"slow": [sys.executable, "-c", SLOW, str(marker), "30"]},
                          triggers={"slow": IntervalTrigger(seconds=1)}, stop_grace_s=5)
    before = signal.getsignal(signal.SIGTERM)
    threading.Timer(2.0, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    t0 = time.monotonic()
    scheduler.run_forever()
    assert time.monotonic() - t0 < 8
    log, _ = read_jsonl(settings.home_dir / "logs" / "schedule.jsonl")
    ends = [r for r in log if r["event"] == "end"]
    assert [r["status"] for r in ends] == ["terminated"]
    assert ends[0]["exit_code"] == -signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) == before  # handlers restored


def test_schedule_run_cli_prints_the_jobs_and_stops_on_sigterm(tmp_path: Path) -> None:
    config = str(settings_for(tmp_path).config_file)
    threading.Timer(1.0, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    result = runner.invoke(cli(), ["--config", config, "schedule", "run"], terminal_width=200)
    assert result.exit_code == 0, result.output
    for job in JOBS:
        assert job in result.stdout
    assert "schedule.jsonl" in result.stdout and "scheduler stopped" in result.stdout


def test_run_job_cli_skips_while_another_run_holds_the_lock(tmp_path: Path) -> None:
    from ratchet.ops.scheduler import job_lock

    settings = settings_for(tmp_path)
    config = str(settings.config_file)
    with job_lock(settings.home_dir / "run", "checks") as fd:
        assert fd is not None
        result = runner.invoke(cli(), ["--config", config, "schedule", "run-job", "checks", "--json"])
    assert result.exit_code == 0, result.output
    run = json.loads(result.stdout)
    assert run["status"] == "skipped" and "another run holds" in run["reason"]
    bad = runner.invoke(cli(), ["--config", config, "schedule", "run-job", "nightly"])
    assert bad.exit_code == 2 and "unknown job 'nightly'" in bad.output


def test_schedule_run_keeps_a_controller_running_and_restarts_it(tmp_path: Path) -> None:
    """The scheduler's controller child takes the lease, comes back after a SIGKILL, and stops with it."""
    from ratchet.store.db import StateDB
    from ratchet.store.leases import CONTROLLER_LEASE, LeaseStore

    settings = settings_for(tmp_path, run_controller=True)
    scheduler = Scheduler(settings, triggers={})
    scheduler.controller.min_backoff_s = 0.2
    leases = LeaseStore(StateDB.connect(settings))

    def holder(timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            lease = leases.get(CONTROLLER_LEASE)
            if lease is not None and lease.held() and str(scheduler.controller.pid or "") in lease.owner:
                return lease.owner
            time.sleep(0.2)
        raise AssertionError(f"no controller took the lease: {leases.get(CONTROLLER_LEASE)}")

    scheduler.start()
    try:
        first = holder()
        os.kill(scheduler.controller.pid, signal.SIGKILL)
        leases.release(CONTROLLER_LEASE, first)  # a dead holder's lease would also lapse after lease_ttl_s
        second = holder()
        assert second != first and scheduler.controller.starts == 2
    finally:
        scheduler.stop()
    assert scheduler.controller.pid is None
    events = [json.loads(line) for line in (settings.home_dir / "logs" / "schedule.jsonl").read_text().splitlines()]
    controller_events = [e["event"] for e in events if e.get("process") == "controller"]
    assert controller_events == ["start", "end", "start", "end"]
