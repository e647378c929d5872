"""Reading the optimization cycles' run summaries (``<home>/runs/run_*/orchestration_summary.json``)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = ["STALE_RUN_HOURS", "SUMMARY_FILENAME", "RunHistory", "RunSummary", "read_runs"]

SUMMARY_FILENAME = "orchestration_summary.json"
STALE_RUN_HOURS = 24.0
"""An unfinished run whose summary has not changed for this long was interrupted (it counts as failed)."""

_RUN_NAME = re.compile(r"^run_(\d{8}_\d{6})(?:_(\d+))?$")


@dataclass
class RunSummary:
    """One run's summary and what follows from it."""

    run_id: str
    data: dict[str, Any]
    modified_at: float

    @property
    def started_at(self) -> datetime | None:
        return _parse(self.data.get("started_at"))

    @property
    def finished_at(self) -> datetime | None:
        return _parse(self.data.get("finished_at"))

    @property
    def dry_run(self) -> bool:
        return bool(self.data.get("dry_run"))

    @property
    def deployed(self) -> list[str]:
        deployed = self.data.get("deployed")
        return [str(d) for d in deployed] if isinstance(deployed, list) else []

    @property
    def improvement_percent(self) -> float | None:
        value = self.data.get("improvement_percent")
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    def status(self, now: float | None = None) -> str:
        """``success``, ``failed``, ``running``, or ``interrupted`` (unfinished and untouched for a day)."""
        if self.data.get("finished_at"):
            return "success" if self.data.get("success") is True else "failed"
        now = time.time() if now is None else now
        return "running" if now - self.modified_at < STALE_RUN_HOURS * 3600 else "interrupted"

    def error(self, now: float | None = None) -> str:
        """What went wrong, in one line (the summary's errors, or why it has none)."""
        if self.status(now) == "interrupted":
            return "the run did not finish (interrupted?)"
        errors = [str(e) for e in self.data.get("errors") or []]
        text = "; ".join(errors) if errors else "failed without an error message"
        return text if len(text) <= 500 else text[:497] + "..."


@dataclass
class RunHistory:
    """Every readable run, newest first, and the run directories whose summary could not be read."""

    runs: list[RunSummary] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def finished(self, now: float | None = None, *, include_dry_runs: bool = False) -> list[RunSummary]:
        """Runs that ended (success, failed or interrupted), newest first."""
        return [r for r in self.runs if r.status(now) != "running" and (include_dry_runs or not r.dry_run)]

    def consecutive_failures(self, now: float | None = None) -> int:
        """Failed or interrupted runs since the last success (dry runs do not count)."""
        count = 0
        for run in self.finished(now):
            if run.status(now) == "success":
                break
            count += 1
        return count

    def last_success(self, now: float | None = None) -> RunSummary | None:
        return next((r for r in self.finished(now) if r.status(now) == "success"), None)

    def last_deployment(self, now: float | None = None) -> RunSummary | None:
        """The newest run that deployed an improvement (started an experiment for a better candidate)."""
        for run in self.finished(now):
            improvement = run.improvement_percent
            if run.deployed and (improvement is None or improvement > 0):
                return run
        return None


def read_runs(runs_dir: Path) -> RunHistory:
    """Read every ``run_*/orchestration_summary.json`` under ``runs_dir``, newest first; count unreadable ones."""
    history = RunHistory()
    if not Path(runs_dir).is_dir():
        return history
    directories = [p for p in Path(runs_dir).iterdir() if p.name.startswith("run_") and p.is_dir()]
    for directory in sorted(directories, key=_run_key, reverse=True):
        path = directory / SUMMARY_FILENAME
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            modified = path.stat().st_mtime
        except (OSError, ValueError):
            history.unreadable.append(directory.name)
            continue
        if not isinstance(data, dict):
            history.unreadable.append(directory.name)
            continue
        history.runs.append(RunSummary(str(data.get("run_id") or directory.name), data, modified))
    return history


def _run_key(path: Path) -> tuple[str, int, str]:
    match = _RUN_NAME.match(path.name)
    if match is None:
        return ("", 0, path.name)
    return (match.group(1), int(match.group(2) or 0), path.name)


def _parse(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
