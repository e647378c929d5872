"""Canaries: production's canary score dropped against its own trailing runs, or canaries stopped running.

It reads what the canary runs stored (``ratchet canary run``, or the controller when due) and
runs no model itself. Per signature whose production version has enough runs: a drop
(:mod:`ratchet.monitor.canary.degradation`) raises a warning with the numbers, and a verdict of
"held" resolves it; a signature without enough runs keeps whatever it had. While canaries are on,
a production version whose newest run is older than :data:`STALE_INTERVALS` intervals raises a
warning too: nothing else would notice canaries that stopped.
"""

from __future__ import annotations

import time

from ratchet.config import Settings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.canary.degradation import Degradation, assess_degradation
from ratchet.monitor.results import CheckResult
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB

__all__ = ["HINT", "NAME", "STALE_INTERVALS", "check_canary"]

NAME = "canary"
STALE_INTERVALS = 3
HINT = ("Run `ratchet canary run -s <signature>` and `ratchet canary history <signature>`: errors and parse failures "
        "point at the model or the serving stack; the same prompt scoring lower on the same probes points at the "
        "model behind it. Roll production back with `ratchet programs promote` if a recent change caused it.")


def check_canary(settings: Settings, *, db: StateDB, registry: ProgramRegistry | None = None,
                 now: float | None = None) -> CheckResult:
    """Alert on each signature whose production canary score dropped, and on canaries that stopped running."""
    if registry is None:
        from ratchet.programs import load_programs

        registry = load_programs(settings)
    now = time.time() if now is None else now
    canary = settings.monitor.canary
    verdicts = assess_degradation(settings, registry, db=db)
    result = CheckResult(NAME)
    for name, verdict in verdicts.items():
        if verdict.judged:
            result.scopes.append(f"{NAME}/production/{name}")
            if verdict.degraded:
                result.alerts.append(_dropped(verdict))
        if canary.enabled and verdict.latest is not None:
            result.scopes.append(f"{NAME}/stale/{name}")
            age_s = now - verdict.latest.at
            if age_s > STALE_INTERVALS * canary.interval_minutes * 60:
                result.alerts.append(Alert(
                    "warning", "Canary Runs Stale",
                    f"{name}: the newest canary run of production {verdict.version} is {age_s / 3600:.1f} h old "
                    f"(runs are due every {canary.interval_minutes:g} min). Is `ratchet controller run` running, "
                    "and does `ratchet canary run` work?",
                    {"signature": name, "version": verdict.version, "age_s": round(age_s),
                     "interval_minutes": canary.interval_minutes}, condition=f"{NAME}/stale/{name}"))
    result.summary = {"signatures": {name: v.to_dict() for name, v in verdicts.items()}, "enabled": canary.enabled}
    return result


def _dropped(verdict: Degradation) -> Alert:
    details = {k: v for k, v in verdict.to_dict().items() if k not in ("message", "latest_run", "degraded")}
    return Alert("warning", "Canary Score Dropped", verdict.message, {**details, "hint": HINT},
                 condition=f"{NAME}/production/{verdict.signature}")
