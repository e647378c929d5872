"""Orchestration health: consecutive failed cycles, stale optimization, no runs at all."""

from __future__ import annotations

import time
from pathlib import Path

from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult
from ratchet.monitor.runs import RunHistory, read_runs

__all__ = ["DAYS_PER_MONTH", "NAME", "check_orchestration"]

NAME = "orchestration"
DAYS_PER_MONTH = 30.44


def check_orchestration(settings: Settings, *, runs_dir: Path | None = None, now: float | None = None) -> CheckResult:
    """Seed 001's orchestration checks over ``<home>/runs`` (dry runs and the run in progress do not count).

    * ``orchestration_failure_threshold`` or more consecutive failed runs → error "Orchestration Run Failures";
    * no improvement deployed within ``optimization_no_improvement_months`` → warning "Stale Optimization";
    * no runs at all → info "No Orchestration Runs".
    """
    now = time.time() if now is None else now
    monitor = settings.monitor
    runs_dir = runs_dir or settings.home_dir / "runs"
    history = read_runs(runs_dir)
    result = CheckResult(NAME, scopes=[NAME])
    finished = history.finished(now)
    streak = history.consecutive_failures(now)
    result.summary = {"runs": len(history.runs), "unreadable": len(history.unreadable),
                      "consecutive_failures": streak, "last_run": history.runs[0].run_id if history.runs else None}
    if not history.runs:
        unreadable = f" ({len(history.unreadable)} unreadable summaries)" if history.unreadable else ""
        result.alerts.append(Alert("info", "No Orchestration Runs",
                                   f"No optimization cycle has run yet under {runs_dir}{unreadable}",
                                   {"runs_dir": str(runs_dir), "unreadable_runs": len(history.unreadable)},
                                   condition=f"{NAME}/no_runs"))
        return result
    if streak >= monitor.orchestration_failure_threshold:
        newest = finished[0]
        result.alerts.append(Alert(
            "error", "Orchestration Run Failures", f"Orchestration has failed {streak} consecutive times",
            {"run_id": newest.run_id, "consecutive_failures": streak, "last_error": newest.error(now),
             "threshold": monitor.orchestration_failure_threshold, "unreadable_runs": len(history.unreadable)},
            condition=f"{NAME}/consecutive_failures"))
    stale = _stale_optimization(history, monitor.optimization_no_improvement_months, now)
    if stale is not None:
        result.alerts.append(stale)
    return result


def _stale_optimization(history: RunHistory, months: float, now: float) -> Alert | None:
    finished = history.finished(now)
    if not finished:
        return None
    window_s = months * DAYS_PER_MONTH * 86400
    last = history.last_deployment(now)
    reference = last or finished[-1]  # no deployment yet: count from the first run
    started = reference.started_at
    if started is None or now - started.timestamp() <= window_s:
        return None
    since = [r for r in finished if (r.started_at is not None and r.started_at > started)]
    details = {"months": months, "last_improvement_run": last.run_id if last else None,
               "last_improvement_at": last.data.get("started_at") if last else None,
               "last_improvement_percent": last.improvement_percent if last else None,
               "runs_since": len(since) if last else len(finished)}
    if last is not None:
        improvement = "" if last.improvement_percent is None else f", +{last.improvement_percent:g} %"
        message = (f"No improvement deployed in {months:g} months (last: {last.run_id}{improvement}, "
                   f"{details['runs_since']} runs since)")
    else:
        message = (f"No improvement deployed in {months:g} months: none in {len(finished)} runs since the first "
                   f"({reference.run_id})")
    return Alert("warning", "Stale Optimization", message, details, condition=f"{NAME}/no_improvement")
