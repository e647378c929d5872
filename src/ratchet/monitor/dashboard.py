"""The dashboard: seed 001's document (orchestration, A/B tests, datasets, alerts) plus live experiments and SLOs.

Shape (the seed's keys are never renamed; Ratchet adds some)::

    {"timestamp": "…",
     "orchestration": {"last_run", "last_success", "consecutive_failures", + "last_status", "runs", "unreadable_runs",
                       "last_improvement"},
     "ab_tests": {"active", "shadow", "paused", "completed", "rolled_back",
                  + "experiments": [live experiments with traffic]},
     "datasets": {"<signature>": {"version", "examples", "quality", "sources", + "versions", "created"}},
     "alerts": {"last_check", "recent_alerts", + "active": […]},
     "slo": {"window_minutes", "signatures": {"<signature>": {"all": {…}, "<arm>": {…}}}},
     "controller": {"alive", "owner", "heartbeat_at", "heartbeat_age_s", "since", "info"},
     "triggers": {"evaluated_at", "launched": {"<signature>": reason}, "signatures": {"<signature>": {"fire",
                  "kind", "reason", "blocked", "numbers"}}},
     "drift": {"checked_at", "window_hours", "signatures": {"<signature>": {"status", "reason", "flagged", "live_n",
               "output_psi", "psi_threshold", "live_novel_share", "reference_novel_share",
               "reference": {"kind", "dataset_version", "program_version", "description"}}}}}

The drift section is the last dispatched drift check's (``<home>/metrics/drift.json``): judging
drift reads the telemetry and the training data, too slow for a dashboard.

A section that cannot be read (an unreachable database) keeps its keys with empty values and
says why under ``"error"``; the rest of the dashboard is still there.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from ratchet.config import Settings
from ratchet.errors import RatchetError
from ratchet.monitor.alert_board import read_alert_board
from ratchet.monitor.checks.ab_tests import traffic_split
from ratchet.monitor.checks.datasets import dataset_signatures
from ratchet.monitor.checks.slo import service_levels
from ratchet.monitor.drift import read_snapshot
from ratchet.monitor.loop_state import read_trigger_snapshot
from ratchet.monitor.runs import read_runs
from ratchet.monitor.state import iso
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB

__all__ = ["RECENT_ON_DASHBOARD", "build_dashboard"]

log = logging.getLogger(__name__)

RECENT_ON_DASHBOARD = 10


def build_dashboard(settings: Settings, *, db: StateDB | None = None, registry: ProgramRegistry | None = None,
                    now: float | None = None) -> dict[str, Any]:
    """The dashboard document (read-only: nothing is sent or changed)."""
    now = time.time() if now is None else now
    opened: list[StateDB] = []

    def database() -> StateDB:
        if db is not None:
            return db
        if not opened:
            opened.append(StateDB.connect(settings))
        return opened[0]

    return {
        "timestamp": iso(now),
        "orchestration": _section(lambda: _orchestration(settings, now),
                                  {"last_run": None, "last_success": None, "consecutive_failures": 0}),
        "ab_tests": _section(lambda: _ab_tests(database()),
                             {"active": 0, "shadow": 0, "paused": 0, "completed": 0, "rolled_back": 0,
                              "experiments": []}),
        "datasets": _section(lambda: _datasets(settings, registry), {}),
        "alerts": _section(lambda: _alerts(settings), {"last_check": None, "recent_alerts": [], "active": []}),
        "slo": _section(lambda: _slo(settings, database(), now),
                        {"window_minutes": settings.monitor.slo_window_minutes, "signatures": {}}),
        "controller": _section(lambda: _controller(database(), now), {"alive": False, "owner": None}),
        "triggers": _section(lambda: read_trigger_snapshot(settings.home_dir) or {"evaluated_at": None,
                                                                                   "signatures": {}, "launched": {}},
                             {"evaluated_at": None, "signatures": {}, "launched": {}}),
        "drift": _section(lambda: _drift(settings), {"checked_at": None,
                                                     "window_hours": settings.monitor.drift.window_hours,
                                                     "signatures": {}}),
        "canaries": _section(lambda: _canaries(database()), {"runs": []}),
    }


def _section(build: Callable[[], dict[str, Any]], empty: dict[str, Any]) -> dict[str, Any]:
    try:
        return build()
    except (RatchetError, OSError, ValueError) as exc:
        log.warning("dashboard section unavailable: %s", exc)
        return {**empty, "error": f"{type(exc).__name__}: {exc}"}
    except Exception as exc:  # e.g. a database driver error: show it, keep the other sections
        log.warning("dashboard section unavailable", exc_info=True)
        return {**empty, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}


def _orchestration(settings: Settings, now: float) -> dict[str, Any]:
    history = read_runs(settings.home_dir / "runs")
    success = history.last_success(now)
    deployed = history.last_deployment(now)
    newest = history.runs[0] if history.runs else None
    return {
        "last_run": newest.run_id if newest else None,
        "last_success": (success.data.get("finished_at") or success.data.get("started_at")) if success else None,
        "consecutive_failures": history.consecutive_failures(now),
        "last_status": newest.status(now) if newest else None,
        "last_trigger": newest.data.get("trigger") if newest else None,
        "runs": len(history.runs),
        "unreadable_runs": len(history.unreadable),
        "last_improvement": None if deployed is None else {
            "run_id": deployed.run_id, "started_at": deployed.data.get("started_at"),
            "improvement_percent": deployed.improvement_percent, "deployed": deployed.deployed},
    }


def _ab_tests(db: StateDB) -> dict[str, Any]:
    from ratchet.rollout.experiments import ExperimentStore

    experiments = ExperimentStore(db).list()
    counts = {status: sum(1 for e in experiments if e.status == status)
              for status in ("shadow", "running", "paused", "promoted", "rolled_back")}
    live = []
    for exp in experiments:
        if exp.live:
            live.append({"experiment_id": exp.experiment_id, "signature": exp.signature, "status": exp.status,
                         "baseline_version": exp.baseline_version, "candidate_version": exp.candidate_version,
                         "stage": exp.stage_index + 1, "stages": exp.stages, "stage_percent": exp.stage_percent,
                         "started": iso(exp.created_at), "traffic": traffic_split(db, exp).to_dict()})
    return {"active": counts["running"], "shadow": counts["shadow"], "paused": counts["paused"],
            "completed": counts["promoted"],
            "rolled_back": counts["rolled_back"], "experiments": live}


def _datasets(settings: Settings, registry: ProgramRegistry | None) -> dict[str, Any]:
    from ratchet.data.datasets import DatasetStore

    if registry is None:
        from ratchet.programs import load_programs

        registry = load_programs(settings)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    signatures, _unknown = dataset_signatures(settings, registry)
    out: dict[str, Any] = {}
    for name in signatures:
        versions = store.list_versions(name)
        latest = next((v for v in versions if v.latest), versions[-1] if versions else None)
        if latest is None:
            continue
        out[name] = {"version": latest.version, "examples": latest.example_count, "quality": latest.quality_mean,
                     "sources": sorted(latest.sources), "versions": len(versions),
                     "created": latest.metadata.get("created")}
    return out


def _alerts(settings: Settings) -> dict[str, Any]:
    board = read_alert_board(settings)
    keys = ("level", "title", "message", "check", "since", "last_sent")
    return {"last_check": board.last_check, "recent_alerts": board.recent[:RECENT_ON_DASHBOARD],
            "active": [{k: a[k] for k in keys} for a in board.active]}


def _slo(settings: Settings, db: StateDB, now: float) -> dict[str, Any]:
    window = settings.monitor.slo_window_minutes
    levels = service_levels(db, window, now=now)
    return {"window_minutes": window,
            "signatures": {sig: {scope: level.to_dict() for scope, level in arms.items()}
                           for sig, arms in levels.items()}}


def _controller(db: StateDB, now: float) -> dict[str, Any]:
    from ratchet.monitor.checks.controller import controller_status

    return controller_status(db, now)


def _drift(settings: Settings) -> dict[str, Any]:
    snapshot = read_snapshot(settings.home_dir)
    if snapshot is None:
        return {"checked_at": None, "window_hours": settings.monitor.drift.window_hours, "signatures": {}}
    signatures = {}
    for name, sig in (snapshot.get("signatures") or {}).items():
        output, inputs, reference = sig.get("output") or {}, sig.get("input") or {}, sig.get("reference") or {}
        signatures[name] = {"status": sig.get("status"), "reason": sig.get("reason"), "flagged": sig.get("flagged"),
                            "live_n": sig.get("live_n"), "output_psi": output.get("psi"),
                            "psi_threshold": output.get("threshold"),
                            "live_novel_share": inputs.get("live_novel_share"),
                            "reference_novel_share": inputs.get("reference_novel_share"),
                            "reference": {k: reference.get(k) for k in ("kind", "dataset_version", "program_version",
                                                                        "description")} if reference else None}
    return {"checked_at": snapshot.get("checked_at"), "window_hours": snapshot.get("window_hours"),
            "signatures": signatures}


def _canaries(db: StateDB) -> dict[str, Any]:
    """The newest canary run of every (signature, version)."""
    from ratchet.store.canaries import last_canary_runs

    runs = sorted(last_canary_runs(db).values(), key=lambda r: (r.signature, -r.at))
    return {"runs": [{**run.to_dict(), "at": iso(run.at)} for run in runs]}
