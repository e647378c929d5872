"""Annotation backlog (seed 004's human flywheel): a signature whose annotation tasks have waited longer than
``flywheel.max_backlog_age_days`` is a warning naming the signature, how many tasks wait and how long.

When the run dispatches, the backlog and the feedback rate are also written for Prometheus
(``<home>/metrics/ratchet_annotation.prom``, :mod:`ratchet.monitor.annotation_metrics`).
"""

from __future__ import annotations

import time

from ratchet.annotate import Backlog, stats
from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.annotation_metrics import feedback_rates, write_metrics
from ratchet.monitor.results import CheckResult
from ratchet.store.db import StateDB

__all__ = ["HINT", "NAME", "check_annotation"]

NAME = "annotation"
HINT = ("Work through the queue (`ratchet annotate next --signature <name>`), add annotators, or skip what nobody can "
        "answer (`ratchet annotate submit <task> --skip`); `ratchet annotate stats` shows the backlog.")
_DAY_S = 86400.0


def check_annotation(settings: Settings, *, db: StateDB, now: float | None = None,
                     export: bool = False) -> CheckResult:
    """Warn per signature whose oldest waiting task is older than the limit; ``export`` writes the textfile."""
    now = time.time() if now is None else now
    max_days = settings.flywheel.max_backlog_age_days
    backlog = stats(db, now=now).backlog
    result = CheckResult(NAME, scopes=[NAME])
    stale = [b for b in backlog if b.oldest_age_s is not None and b.oldest_age_s > max_days * _DAY_S]
    result.alerts.extend(_alert(b, max_days) for b in stale)
    rates = feedback_rates(db, now=now)
    result.summary = {"max_backlog_age_days": max_days, "stale": [b.signature for b in stale],
                      "backlog": [b.to_dict() for b in backlog],
                      "feedback_rate_24h": {r.signature: {"requests": r.requests, "with_feedback": r.with_feedback,
                                                          "rate": round(r.rate, 4)} for r in rates}}
    if export:
        write_metrics(settings.home_dir, backlog, rates, checked_at=now)
    return result


def _alert(backlog: Backlog, max_days: float) -> Alert:
    assert backlog.oldest_age_s is not None
    waiting = backlog.open + backlog.leased
    age_days = backlog.oldest_age_s / _DAY_S
    message = (f"{backlog.signature}: {waiting} annotation task(s) waiting ({backlog.open} open, {backlog.leased} "
               f"leased), the oldest for {age_days:.1f} days (flywheel.max_backlog_age_days: {max_days:g}). "
               "Failures triaged that long ago are not being taught back to the program.")
    details = {"signature": backlog.signature, "waiting": waiting, "open": backlog.open, "leased": backlog.leased,
               "oldest_age_days": round(age_days, 2), "max_backlog_age_days": max_days, "check": NAME, "hint": HINT}
    return Alert("warning", "Annotation Backlog Stale", message, details, condition=f"{NAME}/stale/{backlog.signature}")
