"""``ratchet cleanup``: apply every retention setting to the home directory and the state database.

==================  =======================================================  ===============================
what                rule                                                     setting
==================  =======================================================  ===============================
telemetry           rotated files last modified too long ago (never the      ``telemetry.max_age_days``
                    active ``interactions.jsonl``) and stale temp files
datasets            versions older than N days are archived (tar.gz), never  ``data.archive_after_days``,
                    the newest K nor ``latest``; stale temp dirs removed     ``data.keep_versions``
runs                ``runs/run_*`` directories older than N days (the        ``retention.runs_days``
                    newest run is always kept: checks compare against it)
alerts              ``alerts/alert_*.json`` files older than N days          ``retention.alerts_days``
eval_reports        golden-set evaluation reports older than N days (each    ``retention.eval_reports_days``
                    signature's newest kept)
dspy_cache          DSPy's disk cache ``cache/dspy`` (optimization, eval),   ``retention.dspy_cache_days``
                    as a whole, once nothing opened or wrote it for N days;
                    never while a process has it open (its lock is held)
request index       rows matching feedback to arms, older than N days        ``retention.request_index_days``
feedback            feedback rows older than the same N days                 ``retention.request_index_days``
counters            per-arm per-minute counter rows older than N days        ``retention.counters_days``
canary runs         canary run rows older than N days                        ``retention.canary_days``
==================  =======================================================  ===============================

``dry_run=True`` reports the same counts and bytes without changing anything. One failing
step is reported and does not stop the others. The audit log (``<home>/audit/``) is never
touched: it is kept forever (a real cleanup is itself recorded in it, as ``cleanup.run``).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from ratchet.audit import audit
from ratchet.data.datasets import DatasetStore
from ratchet.errors import RatchetError
from ratchet.lm.cache import dspy_cache_dir, dspy_cache_lock_path, unused_dspy_cache
from ratchet.programs.registry import NAME_PATTERN, REGISTRY, ProgramRegistry
from ratchet.store.canaries import prune_canary_runs
from ratchet.store.db import StateDB
from ratchet.store.feedback import prune_feedback
from ratchet.store.outcomes import prune_outcomes, prune_request_index
from ratchet.store.tables import (
    arm_errors,
    arm_latency_buckets,
    arm_outcomes,
    canary_runs,
    feedback,
    request_index,
)
from ratchet.telemetry.writer import ACTIVE_NAME, iter_log_files

if TYPE_CHECKING:
    from ratchet.config import Settings

__all__ = ["CleanupReport", "CleanupStep", "run_cleanup"]

_DAY_S = 86400.0
_RUN_NAME = re.compile(r"^run_(\d{8}_\d{6})")
_ALERT_NAME = re.compile(r"^alert_.*\.json$")
_TEMP_MAX_AGE_S = 3600.0  # temp leftovers younger than this may belong to a live writer
_MAX_ITEMS = 200  # paths listed per step in a report


@dataclass
class CleanupStep:
    """What one retention rule removed (or, in a dry run, would remove)."""

    name: str
    action: str  # deleted, archived, pruned
    rule: str
    count: int = 0
    bytes: int = 0
    items: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    error: str | None = None

    def add(self, item: str, size: int = 0) -> None:
        self.count += 1
        self.bytes += size
        if len(self.items) < _MAX_ITEMS:
            self.items.append(item)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "action": self.action, "rule": self.rule, "count": self.count,
                "bytes": self.bytes, "items": self.items, "skipped": self.skipped, "error": self.error}


@dataclass
class CleanupReport:
    """Every step of one cleanup."""

    home: str
    dry_run: bool
    steps: list[CleanupStep] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(step.bytes for step in self.steps)

    @property
    def errors(self) -> list[str]:
        return [f"{step.name}: {step.error}" for step in self.steps if step.error]

    def step(self, name: str) -> CleanupStep:
        return next(step for step in self.steps if step.name == name)

    def to_dict(self) -> dict[str, Any]:
        return {"home": self.home, "dry_run": self.dry_run, "bytes": self.bytes, "errors": self.errors,
                "steps": [step.to_dict() for step in self.steps]}


def run_cleanup(settings: Settings, registry: ProgramRegistry | None = None, *, dry_run: bool = False,
                db: StateDB | None = None, now: float | None = None) -> CleanupReport:
    """Apply the retention settings to ``settings.home_dir`` and the state database; report what was removed."""
    now = time.time() if now is None else now
    home = settings.home_dir
    registry = registry if registry is not None else REGISTRY
    store = DatasetStore(home, settings.data, registry=registry)
    retention, data = settings.retention, settings.data
    telemetry_days = settings.telemetry.max_age_days
    index_cutoff = now - retention.request_index_days * _DAY_S
    counters_cutoff = now - retention.counters_days * _DAY_S
    canary_cutoff = now - retention.canary_days * _DAY_S
    opened: list[StateDB] = []

    def state_db() -> StateDB:
        if db is not None:
            return db
        if not opened:
            opened.append(StateDB.connect(settings))
        return opened[0]

    plan: list[tuple[CleanupStep, Callable[[CleanupStep], None]]] = [
        (CleanupStep("telemetry", "deleted", f"rotated files older than {telemetry_days:g} days"),
         lambda step: _telemetry(step, home / "telemetry", telemetry_days, now, dry_run)),
        (CleanupStep("datasets", "archived", f"versions older than {data.archive_after_days:g} days, "
                     f"keeping the newest {data.keep_versions}"),
         lambda step: _datasets(step, store, registry, dry_run)),
        (CleanupStep("dataset_temp", "deleted", "leftovers of interrupted dataset writes older than 1 hour"),
         lambda step: _dataset_temp(step, store, home, dry_run)),
        (CleanupStep("runs", "deleted", f"run directories older than {retention.runs_days:g} days "
                     "(the newest is kept) and `ratchet optimize` logs as old"),
         lambda step: _runs(step, home, retention.runs_days, now, dry_run)),
        (CleanupStep("alerts", "deleted", f"alert files older than {retention.alerts_days:g} days"),
         lambda step: _alerts(step, home / "alerts", retention.alerts_days, now, dry_run)),
        (CleanupStep("eval_reports", "deleted", f"golden-set evaluation reports older than "
                     f"{retention.eval_reports_days:g} days (each signature's newest is kept)"),
         lambda step: _eval_reports(step, home / "eval_reports", retention.eval_reports_days, now, dry_run)),
        (CleanupStep("dspy_cache", "deleted", f"DSPy's disk cache unused for {retention.dspy_cache_days:g} days "
                     "(never while a process has it open)"),
         lambda step: _dspy_cache(step, home, retention.dspy_cache_days, now, dry_run)),
        (CleanupStep("request_index", "pruned", f"rows older than {retention.request_index_days:g} days"),
         lambda step: _rows(step, state_db(), "request_index", index_cutoff, dry_run)),
        (CleanupStep("feedback", "pruned", f"rows older than {retention.request_index_days:g} days"),
         lambda step: _rows(step, state_db(), "feedback", index_cutoff, dry_run)),
        (CleanupStep("counters", "pruned", f"per-minute counter rows older than {retention.counters_days:g} days"),
         lambda step: _rows(step, state_db(), "counters", counters_cutoff, dry_run)),
        (CleanupStep("canary_runs", "pruned", f"canary run rows older than {retention.canary_days:g} days"),
         lambda step: _rows(step, state_db(), "canary_runs", canary_cutoff, dry_run)),
    ]
    report = CleanupReport(home=str(home), dry_run=dry_run)
    try:
        for step, work in plan:
            _run(report, step, work)
    finally:
        for opened_db in opened:
            opened_db.dispose()
    if not dry_run:
        audit(settings, "cleanup.run", outcome="failed" if report.errors else "ok",
              reason="; ".join(report.errors)[:500] or None,
              details={**{step.name: step.count for step in report.steps}, "bytes": report.bytes})
    return report


def _run(report: CleanupReport, step: CleanupStep, work: Callable[[CleanupStep], None]) -> None:
    report.steps.append(step)
    try:
        work(step)
    except (RatchetError, OSError, SQLAlchemyError) as exc:
        step.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _size(path: Path) -> int:
    """Bytes of a file, or of every file under a directory (symlinks not followed)."""
    try:
        if path.is_symlink() or not path.is_dir():
            return path.lstat().st_size
    except OSError:
        return 0
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                continue
    return total


def _age_s(path: Path, now: float) -> float:
    return now - path.lstat().st_mtime


def _rel(path: Path, home: Path) -> str:
    try:
        return str(path.relative_to(home))
    except ValueError:
        return str(path)


def _telemetry(step: CleanupStep, directory: Path, max_age_days: float, now: float, dry_run: bool) -> None:
    """The writer's retention (``TelemetryWriter.apply_retention``) without starting a writer."""
    for path in iter_log_files(directory):
        if path.name == ACTIVE_NAME:
            continue
        try:
            if _age_s(path, now) <= max_age_days * _DAY_S:
                continue
            size = path.stat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:  # a writer's maintenance thread got there first
            continue
        step.add(f"telemetry/{path.name}", size)
    if directory.is_dir():  # leftovers of a crashed compression, as the writer's own retention removes them
        for path in directory.glob(".interactions-*.tmp"):
            try:
                if _age_s(path, now) <= _TEMP_MAX_AGE_S:
                    continue
                size = path.lstat().st_size
                if not dry_run:
                    path.unlink()
            except FileNotFoundError:
                continue
            step.add(f"telemetry/{path.name}", size)


def _datasets(step: CleanupStep, store: DatasetStore, registry: ProgramRegistry, dry_run: bool) -> None:
    if not store.root.is_dir():
        return
    for sig_dir in sorted(p for p in store.root.iterdir() if p.is_dir() and NAME_PATTERN.match(p.name)):
        if sig_dir.name not in registry:
            step.skipped.append(f"{sig_dir.name}: not a registered program (its versions are left as they are)")
            continue
        sizes = {p.name: _size(p) for p in sig_dir.iterdir() if p.is_dir() and not p.is_symlink()}
        for info in store.archive(sig_dir.name, dry_run=dry_run):
            step.add(f"{info.signature}/{info.version}", sizes.get(info.version, 0))


def _dataset_temp(step: CleanupStep, store: DatasetStore, home: Path, dry_run: bool) -> None:
    listed = store.sweep_temp(_TEMP_MAX_AGE_S, dry_run=True)
    sizes = {path: _size(path) for path in listed}  # measured first: the sweep removes them
    for path in listed if dry_run else store.sweep_temp(_TEMP_MAX_AGE_S):
        step.add(_rel(path, home), sizes.get(path, 0))


def _run_time(path: Path) -> float:
    """When a run started: from its name (``run_YYYYmmdd_HHMMSS``), else its directory's mtime."""
    match = _RUN_NAME.match(path.name)
    if match:
        try:
            return datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=UTC).timestamp()
        except ValueError:
            pass
    return path.stat().st_mtime


def _runs(step: CleanupStep, home: Path, days: float, now: float, dry_run: bool) -> None:
    _optimize_logs(step, home, days, now, dry_run)
    runs_dir = home / "runs"
    if not runs_dir.is_dir():
        return
    runs = sorted(((_run_time(p), p) for p in runs_dir.iterdir()
                   if p.is_dir() and not p.is_symlink() and p.name.startswith("run_")), key=lambda item: item[0])
    for started, path in runs[:-1]:  # never the newest
        if now - started <= days * _DAY_S:
            continue
        size = _size(path)
        if not dry_run:
            shutil.rmtree(path)
        step.add(_rel(path, home), size)


def _optimize_logs(step: CleanupStep, home: Path, days: float, now: float, dry_run: bool) -> None:
    """What ``ratchet optimize`` captured from the optimizers (``<home>/logs/optimize_*.log``), by age."""
    for path in sorted((home / "logs").glob("optimize_*.log")):
        try:
            if not path.is_file() or _age_s(path, now) <= days * _DAY_S:
                continue
            size = path.stat().st_size
            if not dry_run:
                path.unlink()
        except FileNotFoundError:
            continue
        step.add(_rel(path, home), size)


def _remove_old_file(step: CleanupStep, path: Path, label: str, days: float, now: float, dry_run: bool) -> None:
    """Remove ``path`` (noted as ``label``) when it was last modified more than ``days`` ago."""
    try:
        if _age_s(path, now) <= days * _DAY_S:
            return
        size = path.stat().st_size
        if not dry_run:
            path.unlink()
    except FileNotFoundError:
        return
    step.add(label, size)


def _alerts(step: CleanupStep, directory: Path, days: float, now: float, dry_run: bool) -> None:
    if not directory.is_dir():
        return
    for path in sorted(directory.iterdir()):
        if _ALERT_NAME.match(path.name) and path.is_file():
            _remove_old_file(step, path, f"alerts/{path.name}", days, now, dry_run)


def _eval_reports(step: CleanupStep, directory: Path, days: float, now: float, dry_run: bool) -> None:
    """``eval_reports/<signature>/<stamp>.json`` and its ``.md`` older than ``days``, except each signature's newest
    report (``ratchet eval-regression`` pairs its next run with it)."""
    from ratchet.flywheel.regression import report_files

    if not directory.is_dir():
        return
    for signature in sorted(p for p in directory.iterdir() if p.is_dir()):
        for path in report_files(directory.parent, signature.name)[:-1]:  # oldest first: the newest stays
            for member in (path, path.with_suffix(".md")):
                _remove_old_file(step, member, f"eval_reports/{signature.name}/{member.name}", days, now, dry_run)


def _dspy_cache(step: CleanupStep, home: Path, days: float, now: float, dry_run: bool) -> None:
    """DSPy's disk cache as a whole, once unused for ``days``, under its exclusive lock.

    Every process that may write the cache holds its lock shared (``ratchet.lm.cache``), so the
    cache is removed only when no process has it open, and nobody can open it while it goes. A
    diskcache directory removed under a live writer would fail that writer's next call.
    """
    directory = dspy_cache_dir(home)
    if directory.is_symlink():
        step.skipped.append(f"{_rel(directory, home)}: a symbolic link (left as it is)")
        return
    if not directory.is_dir() or now - _last_used(directory, home) <= days * _DAY_S:
        return
    with unused_dspy_cache(home, create=not dry_run) as unused:
        if not unused:
            step.skipped.append(f"{_rel(directory, home)}: open in a running process (optimize, eval or predict)")
            return
        size = _size(directory)
        if not dry_run:
            shutil.rmtree(directory)
        step.add(_rel(directory, home), size)


def _last_used(directory: Path, home: Path) -> float:
    """When the disk cache was last opened (its lock file) or written (anything under it)."""
    stamps = [directory.lstat().st_mtime]
    with contextlib.suppress(FileNotFoundError):
        stamps.append(dspy_cache_lock_path(home).lstat().st_mtime)
    for root, dirs, files in os.walk(directory):
        for name in (*dirs, *files):
            with contextlib.suppress(FileNotFoundError):
                stamps.append(os.lstat(os.path.join(root, name)).st_mtime)
    return max(stamps)


def _rows(step: CleanupStep, db: StateDB, what: str, cutoff: float, dry_run: bool) -> None:
    if not dry_run:
        prune = {"request_index": prune_request_index, "feedback": prune_feedback, "counters": prune_outcomes,
                 "canary_runs": prune_canary_runs}[what]
        step.count = prune(db, cutoff)
        return
    if what == "counters":  # the conditions of prune_outcomes
        minute = math.floor(cutoff / 60)
        queries = [select(func.count()).select_from(t).where(t.c.minute < minute)
                   for t in (arm_outcomes, arm_errors, arm_latency_buckets)]
    elif what == "canary_runs":  # the condition of prune_canary_runs
        queries = [select(func.count()).select_from(canary_runs).where(canary_runs.c.at < cutoff)]
    else:  # the conditions of prune_request_index and prune_feedback
        table = request_index if what == "request_index" else feedback
        queries = [select(func.count()).select_from(table).where(table.c.created_at < cutoff)]
    with db.begin() as conn:
        step.count = sum(int(conn.execute(query).scalar_one()) for query in queries)
