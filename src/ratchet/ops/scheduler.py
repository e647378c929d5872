"""``ratchet schedule``: the monthly cycle, the hourly checks, the weekly cleanup, the weekly flywheel triage and the
daily eval regression on the golden sets, on cron schedules.

Each job runs as a child process of the same ``ratchet`` command with the same config
(``python -m ratchet --config … cycle``), never two runs of one job at once:

- inside one scheduler: ``max_instances=1`` and ``coalesce=True`` (a run still going when the
  next is due is skipped, several missed runs become one);
- across schedulers, crontab and ``ratchet schedule run-job`` on one host: an exclusive ``flock``
  on ``<home>/run/<job>.lock``, held until the child exits (the child inherits it, so it stays
  held even if the scheduler dies first); a run that finds it taken is skipped.

Every run is logged to ``<home>/logs/schedule.jsonl``: a ``start`` line, then an ``end`` line
with the exit code and duration (or a ``skipped`` line with the reason). The child's own
output is appended to ``<home>/logs/<job>.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED, JobEvent
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger

from ratchet.errors import ConfigError
from ratchet.ops.supervised import SupervisedProcess
from ratchet.store.jsonl import append_jsonl
from ratchet.store.private import make_private_dir, open_private, private_opener

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = [
    "JOBS",
    "JobRun",
    "Scheduler",
    "crontab_lines",
    "job_commands",
    "job_lock",
    "job_triggers",
    "ratchet_argv",
    "schedule_log_path",
]

log = logging.getLogger(__name__)

JOBS = ("cycle", "checks", "cleanup", "flywheel", "eval_regression")
"""The scheduled jobs, each with a ``schedule.<job>_cron`` setting."""

_STOP_GRACE_S = 30.0  # a child still running at shutdown gets SIGTERM, then SIGKILL after this


@dataclass(frozen=True)
class JobRun:
    """One run of a job: when, how long, how it ended (``ok``, ``failed``, ``skipped``, ``terminated``, ``error``)."""

    job: str
    run_id: str
    status: str
    started: str
    ended: str | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def schedule_log_path(settings: Settings) -> Path:
    """``<home>/logs/schedule.jsonl``: one line per job start, end or skip."""
    return settings.home_dir / "logs" / "schedule.jsonl"


def ratchet_argv(settings: Settings, executable: str | None = None) -> list[str]:
    argv = [executable or sys.executable, "-m", "ratchet"]
    if settings.config_file is not None:
        argv += ["--config", str(Path(settings.config_file).resolve())]
    return argv


def job_commands(settings: Settings, *, executable: str | None = None) -> dict[str, list[str]]:
    """The argv of each job: ``ratchet cycle`` (+ ``schedule.cycle_args``), ``monitor check-all``, ``cleanup``,
    ``flywheel run --week last --both`` (for the last complete ISO week, resolved when the job runs: phase 1,
    then phase 2 importing the answers given since) and ``eval-regression`` (exit 1, logged as failed, when a
    version regressed on its golden set)."""
    base = ratchet_argv(settings, executable)
    return {
        "cycle": [*base, "cycle", *settings.schedule.cycle_args],
        "checks": [*base, "monitor", "check-all"],
        "cleanup": [*base, "cleanup"],
        "flywheel": [*base, "flywheel", "run", "--week", "last", "--both"],
        "eval_regression": [*base, "eval-regression"],
    }


def _timezone(settings: Settings) -> ZoneInfo:
    try:
        return ZoneInfo(settings.schedule.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"schedule.timezone: unknown time zone {settings.schedule.timezone!r} "
                          "(use an IANA name such as UTC or Europe/Berlin)") from None


_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")  # cron's numbering: 0 (and 7) is Sunday


def _cron_weekdays(field: str) -> str:
    """A crontab day-of-week field as APScheduler 3 reads it: day names, never numbers.

    APScheduler 3 numbers weekdays from Monday = 0 (its ``from_crontab`` passes cron's numbers through, so
    ``0 3 * * 0`` would run on Mondays); names mean the same to both. ``ValueError`` for a malformed field.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"day-of-week step must be positive: {part!r}")
        if span == "*":
            first, last = 0, 6
        else:
            low, _, high = span.partition("-")
            first = _weekday_number(low)
            last = _weekday_number(high) if high else (6 if step_text else first)
        if last < first:
            raise ValueError(f"day-of-week range runs backwards: {part!r}")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_WEEKDAYS[day] for day in sorted(days))


def _weekday_number(text: str) -> int:
    if text in _WEEKDAYS:
        return _WEEKDAYS.index(text)
    if text.isdigit() and 0 <= int(text) <= 7:
        return int(text)
    raise ValueError(f"unknown day of week {text!r} (0-7 or sun-sat)")


def job_triggers(settings: Settings) -> dict[str, CronTrigger]:
    """A cron trigger per job from ``schedule.<job>_cron``; ``ConfigError`` naming the key when one is invalid."""
    tz = _timezone(settings)
    triggers = {}
    for job in JOBS:
        key = f"{job}_cron"
        expression = getattr(settings.schedule, key)
        try:
            fields = expression.split()
            if len(fields) == 5:
                fields[4] = _cron_weekdays(fields[4])
            triggers[job] = CronTrigger.from_crontab(" ".join(fields), timezone=tz)
        except ValueError as exc:
            raise ConfigError(f"schedule.{key}: invalid cron expression {expression!r}: {exc} "
                              "(five fields: minute hour day-of-month month day-of-week)") from None
    return triggers


def crontab_lines(settings: Settings, *, executable: str | None = None) -> list[str]:
    """Crontab entries equivalent to ``ratchet schedule run``: each job through ``schedule run-job`` (same lock,
    same log), output appended to ``<home>/logs/<job>.log``."""
    job_triggers(settings)  # validate first
    home = settings.home_dir.resolve()
    base = " ".join(shlex.quote(part) for part in ratchet_argv(settings, executable))
    cwd = shlex.quote(str(Path.cwd()))
    source = settings.config_file.resolve() if settings.config_file else "RATCHET_* environment variables"
    lines = [
        f"# Ratchet schedule (from {source}); install with: ratchet schedule crontab | crontab -",
        (f"# Times are {settings.schedule.timezone} (schedule.timezone): cron reads them in the host's time zone."
         if settings.schedule.timezone == "UTC" else
         f"# Times are {settings.schedule.timezone} (schedule.timezone): CRON_TZ below needs cronie; "
         "other crons read them in the host's time zone."),
        "# Secrets (API keys, webhook URLs) come from the environment: set them above these lines.",
    ]
    if settings.schedule.timezone != "UTC":
        lines.append(f"CRON_TZ={settings.schedule.timezone}")
    titles = {"cycle": "monthly optimization cycle", "checks": "monitoring checks", "cleanup": "retention cleanup",
              "flywheel": "weekly triage into the annotation queue, then import of the answers (last week)",
              "eval_regression": "daily eval regression: production and live candidates on the golden sets"}
    for job in JOBS:
        logfile = shlex.quote(str(home / "logs" / f"{job}.log"))
        lines.append(f"# {titles[job]}")
        lines.append(f"{getattr(settings.schedule, f'{job}_cron')} cd {cwd} && {base} schedule run-job {job} "
                     f">> {logfile} 2>&1")
    if settings.schedule.run_controller:
        logfile = shlex.quote(str(home / "logs" / "controller.log"))
        lines.append("# the rollout controller, one pass a minute (schedule run keeps one running instead)")
        lines.append(f"* * * * * cd {cwd} && {base} controller run --once >> {logfile} 2>&1")
    return lines


@contextlib.contextmanager
def job_lock(lock_dir: Path, job: str) -> Iterator[int | None]:
    """Hold ``<lock_dir>/<job>.lock`` exclusively: yields its descriptor, or None when another run holds it."""
    make_private_dir(lock_dir)
    fd = open_private(lock_dir / f"{job}.lock", os.O_RDWR)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield None
            return
        yield fd
    finally:
        os.close(fd)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Scheduler:
    """Runs the jobs on their schedules in a background APScheduler; ``run_job`` runs one now.

    ``commands`` (job → argv) and ``triggers`` (job → APScheduler trigger) replace the defaults
    from the settings, e.g. a one-second trigger and a ``sleep`` command in tests.
    """

    def __init__(self, settings: Settings, *, commands: Mapping[str, Sequence[str]] | None = None,
                 triggers: Mapping[str, BaseTrigger] | None = None, stop_grace_s: float = _STOP_GRACE_S) -> None:
        self.settings = settings
        commands = commands if commands is not None else job_commands(settings)
        self.commands = {job: list(argv) for job, argv in commands.items()}
        self.triggers = dict(triggers) if triggers is not None else dict(job_triggers(settings))
        unknown = set(self.triggers) - set(self.commands)
        if unknown:
            raise ConfigError(f"no command for scheduled job(s): {', '.join(sorted(unknown))}")
        home = settings.home_dir
        self.lock_dir = home / "run"
        self.log_path = schedule_log_path(settings)
        self.output_dir = home / "logs"
        self.stop_grace_s = stop_grace_s
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._children_lock = threading.Lock()
        self._stopping = threading.Event()
        self._active = 0  # run_job calls in progress
        self._idle = threading.Condition()
        self._scheduler: BackgroundScheduler | None = None
        self.controller: SupervisedProcess | None = None
        if settings.schedule.run_controller:
            self.controller = SupervisedProcess(
                "controller", [*ratchet_argv(settings), "controller", "run"], self.output_dir / "controller.log",
                on_event=self._log, stop_grace_s=stop_grace_s)

    # -- one run -------------------------------------------------------------------------------
    def run_job(self, job: str) -> JobRun:
        """Run ``job`` now in a child process (skipped when another run holds its lock); log and return the run."""
        with self._idle:
            self._active += 1
        try:
            return self._run_job(job)
        finally:
            with self._idle:
                self._active -= 1
                self._idle.notify_all()

    def _run_job(self, job: str) -> JobRun:
        argv = self.commands[job]
        run_id = uuid.uuid4().hex[:12]
        with job_lock(self.lock_dir, job) as fd:
            if fd is None:
                return self._skipped(job, run_id, f"another run holds {self.lock_dir / f'{job}.lock'}")
            if self._stopping.is_set():
                return self._skipped(job, run_id, "the scheduler is stopping")
            started = _now()
            self._log({"event": "start", "job": job, "run_id": run_id, "started": started, "argv": argv,
                       "scheduler_pid": os.getpid()})
            t0 = time.monotonic()
            status, exit_code, reason = self._spawn(job, argv, fd)
            run = JobRun(job=job, run_id=run_id, status=status, started=started, ended=_now(),
                         duration_s=round(time.monotonic() - t0, 3), exit_code=exit_code, reason=reason)
        self._log({"event": "end", **run.to_dict()})
        return run

    def _spawn(self, job: str, argv: list[str], lock_fd: int) -> tuple[str, int | None, str | None]:
        make_private_dir(self.output_dir)
        with self._children_lock:  # stop() either sees this child or we see stop()
            if self._stopping.is_set():
                return "terminated", None, "the scheduler stopped before the run started"
            try:
                with open(self.output_dir / f"{job}.log", "ab", opener=private_opener) as out:
                    # The child inherits the lock: it stays held until the child exits, whatever happens to us.
                    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                             pass_fds=(lock_fd,))
            except OSError as exc:
                return "error", None, f"could not start {argv[0]}: {exc}"
            self._children[job] = child
        try:
            code = child.wait()
        finally:
            with self._children_lock:
                self._children.pop(job, None)
        if self._stopping.is_set() and code < 0:
            return "terminated", code, f"stopped by signal {-code} at scheduler shutdown"
        return ("ok" if code == 0 else "failed"), code, None

    def _skipped(self, job: str, run_id: str, reason: str) -> JobRun:
        run = JobRun(job=job, run_id=run_id, status="skipped", started=_now(), reason=reason)
        log.warning("schedule: %s skipped: %s", job, reason)
        self._log({"event": "skipped", **run.to_dict()})
        return run

    def _log(self, record: dict[str, Any]) -> None:
        try:
            append_jsonl(self.log_path, [record])
        except OSError as exc:  # the run itself matters more than its log line
            log.error("schedule: cannot write %s: %s", self.log_path, exc)

    # -- the scheduler -------------------------------------------------------------------------
    def start(self) -> None:
        """Start scheduling in background threads (returns at once)."""
        scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(max(1, len(self.triggers)))},
                                        timezone=_timezone(self.settings))
        for job, trigger in self.triggers.items():
            scheduler.add_job(self.run_job, trigger, args=(job,), id=job, name=job, max_instances=1, coalesce=True,
                              misfire_grace_time=300, replace_existing=True)
        scheduler.add_listener(self._on_not_run, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
        self._scheduler = scheduler
        scheduler.start()
        if self.controller is not None:
            self.controller.start()

    def next_runs(self) -> dict[str, datetime | None]:
        """When each job runs next (after ``start``)."""
        if self._scheduler is None:
            return {}
        return {job.id: job.next_run_time for job in self._scheduler.get_jobs()}

    def stop(self) -> None:
        """Stop scheduling; children still running get SIGTERM (SIGKILL after ``stop_grace_s``) and their runs
        are logged before this returns. Idempotent."""
        self._stopping.set()
        if self.controller is not None:
            self.controller.stop()
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)
        with self._children_lock:
            children = list(self._children.values())
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                child.terminate()
        deadline = time.monotonic() + self.stop_grace_s
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    child.kill()
        with self._idle:
            self._idle.wait_for(lambda: self._active == 0, timeout=5.0)

    def run_forever(self, *, on_start: Callable[[Scheduler], None] | None = None) -> None:
        """Start, then block until SIGTERM or SIGINT; stop cleanly. Call from the main thread."""
        stop = threading.Event()

        def handle(signum: int, _frame: Any) -> None:
            log.info("schedule: signal %d, stopping", signum)
            stop.set()

        previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            if on_start is not None:
                on_start(self)
            while not stop.wait(1.0):
                pass
        finally:
            self.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_not_run(self, event: JobEvent) -> None:
        reason = ("the previous run is still going" if event.code == EVENT_JOB_MAX_INSTANCES
                  else "missed its time (the scheduler was busy or asleep)")
        self._skipped(event.job_id, uuid.uuid4().hex[:12], reason)
