"""Running checks: each in turn (a failing one becomes an alert, never stops the others), then dispatching."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ratchet.config import Settings
from ratchet.errors import RatchetError
from ratchet.monitor.alerts import Alert, level_rank
from ratchet.monitor.checks.ab_tests import check_ab_tests
from ratchet.monitor.checks.annotation import check_annotation
from ratchet.monitor.checks.audit import check_audit
from ratchet.monitor.checks.canary import check_canary
from ratchet.monitor.checks.controller import check_controller
from ratchet.monitor.checks.datasets import check_dataset_quality
from ratchet.monitor.checks.drift import check_drift
from ratchet.monitor.checks.golden import check_golden
from ratchet.monitor.checks.keys import check_keys
from ratchet.monitor.checks.orchestration import check_orchestration
from ratchet.monitor.checks.slo import check_slo
from ratchet.monitor.dispatch import AlertDispatcher, Delivery
from ratchet.monitor.results import CheckResult, worst_level
from ratchet.monitor.state import STATE_FILENAME, read_state
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB

__all__ = ["CHECKS", "EXIT_CODES", "CheckRun", "exit_code", "run_checks"]

log = logging.getLogger(__name__)

CHECKS = ("orchestration", "ab_tests", "controller", "dataset_quality", "slo", "drift", "canary", "audit", "keys",
          "annotation", "golden")
EXIT_CODES = {None: 0, "info": 0, "warning": 1, "error": 2, "critical": 3}
"""Exit code of a check command by the worst level found."""


def exit_code(level: str | None) -> int:
    return EXIT_CODES[level]


@dataclass
class CheckRun:
    """What ``run_checks`` did: each check's result, the deliveries (empty when not dispatched), the worst level."""

    results: list[CheckResult]
    deliveries: list[Delivery] = field(default_factory=list)
    dispatched: bool = False

    @property
    def alerts(self) -> list[Alert]:
        """Every alert found (conditions and events), resolved notices excluded."""
        return [alert for result in self.results for alert in result.found]

    @property
    def worst_level(self) -> str | None:
        return worst_level(self.alerts)

    @property
    def exit_code(self) -> int:
        return exit_code(self.worst_level)

    def to_dict(self) -> dict[str, Any]:
        return {"worst_level": self.worst_level, "exit_code": self.exit_code, "dispatched": self.dispatched,
                "alerts": [a.to_dict() for a in sorted(self.alerts, key=lambda a: -level_rank(a.level))],
                "checks": [r.to_dict() for r in self.results],
                "deliveries": [d.to_dict() for d in self.deliveries]}


class _Lazy:
    """The state database and program registry, opened on first use and shared by the checks."""

    def __init__(self, settings: Settings, db: StateDB | None, registry: ProgramRegistry | None) -> None:
        self.settings, self._db, self._registry = settings, db, registry

    @property
    def db(self) -> StateDB:
        if self._db is None:
            self._db = StateDB.connect(self.settings)
        return self._db

    @property
    def registry(self) -> ProgramRegistry:
        if self._registry is None:
            from ratchet.programs import load_programs

            self._registry = load_programs(self.settings)
        return self._registry


def run_checks(
    settings: Settings,
    names: Sequence[str] | None = None,
    dispatcher: AlertDispatcher | None = None,
    *,
    signature: str | None = None,
    db: StateDB | None = None,
    registry: ProgramRegistry | None = None,
    now: float | None = None,
) -> CheckRun:
    """Run the named checks (all by default), dispatch their alerts unless ``dispatcher`` is None."""
    names = list(names or CHECKS)
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {', '.join(unknown)} (known: {', '.join(CHECKS)})")
    now = time.time() if now is None else now
    lazy = _Lazy(settings, db, registry)
    state = dispatcher.state() if dispatcher is not None else read_state(settings.home_dir / STATE_FILENAME)
    since = state.last_run("ab_tests")
    runners: dict[str, Callable[[], CheckResult]] = {
        "orchestration": lambda: check_orchestration(settings, now=now),
        "ab_tests": lambda: check_ab_tests(settings, db=lazy.db, now=now, since=since),
        "controller": lambda: check_controller(db=lazy.db, now=now),
        "dataset_quality": lambda: check_dataset_quality(settings, signature, registry=lazy.registry),
        "slo": lambda: check_slo(settings, db=lazy.db, now=now),
        "drift": lambda: check_drift(settings, registry=lazy.registry, now=now, export=dispatcher is not None),
        "canary": lambda: check_canary(settings, db=lazy.db, registry=lazy.registry, now=now),
        "audit": lambda: check_audit(settings),
        "keys": lambda: check_keys(settings, db=lazy.db, now=now),
        "annotation": lambda: check_annotation(settings, db=lazy.db, now=now, export=dispatcher is not None),
        "golden": lambda: check_golden(settings, registry=lazy.registry, export=dispatcher is not None),
    }
    results = [_run_one(name, runners[name]) for name in names]
    for result in results:  # an event already delivered (a rollback alerted last hour) is not a finding any more
        result.events = [event for event in result.events if event.key not in state.events]
    run = CheckRun(results)
    if dispatcher is not None:
        run.deliveries = dispatcher.dispatch(results, now=now)
        run.dispatched = True
    return run


def _run_one(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    started = time.perf_counter()
    try:
        result = check()
    except Exception as exc:
        if isinstance(exc, RatchetError):
            error = str(exc)
        else:
            error = f"{type(exc).__name__}: {exc}"
            log.exception("monitoring check %s failed", name)
        alert = Alert("error", "Monitoring Check Failed", f"The {name} check could not run: {error}",
                      {"check": name, "error": error}, condition=f"{name}/check_failed")
        result = CheckResult(name, alerts=[alert], error=error)
    else:
        result.scopes.append(f"{name}/check_failed")
    result.seconds = round(time.perf_counter() - started, 3)
    return result

