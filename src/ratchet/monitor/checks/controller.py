"""The rollout controller: is one alive (its lease heartbeat is recent) while experiments need it?"""

from __future__ import annotations

import time
from typing import Any

from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult
from ratchet.monitor.state import iso
from ratchet.rollout.experiments import LIVE, ExperimentStore
from ratchet.store.db import StateDB
from ratchet.store.leases import CONTROLLER_LEASE, LeaseStore

__all__ = ["HEARTBEAT_STALE_S", "NAME", "check_controller", "controller_status"]

NAME = "controller"
HEARTBEAT_STALE_S = 300.0
"""No heartbeat for this long: the controller is taken for dead (the Prometheus rule uses the same 5 minutes)."""


def controller_status(db: StateDB, now: float | None = None) -> dict[str, Any]:
    """Who holds the controller lease, its last heartbeat, and whether that is recent enough to count as alive."""
    now = time.time() if now is None else now
    lease = LeaseStore(db).get(CONTROLLER_LEASE)
    if lease is None:
        return {"alive": False, "owner": None, "heartbeat_at": None, "heartbeat_age_s": None}
    age = max(0.0, now - lease.heartbeat_at)
    return {"alive": age < HEARTBEAT_STALE_S, "owner": lease.owner, "heartbeat_at": iso(lease.heartbeat_at),
            "heartbeat_age_s": round(age, 1), "since": iso(lease.acquired_at), "info": lease.info}


def check_controller(*, db: StateDB, now: float | None = None) -> CheckResult:
    """Critical when experiments are live and no controller has beaten for 5 minutes (or none ever ran)."""
    now = time.time() if now is None else now
    result = CheckResult(NAME, scopes=[NAME])
    status = controller_status(db, now)
    live = [e.experiment_id for e in ExperimentStore(db).list(statuses=LIVE)]
    result.summary = {**status, "live_experiments": live}
    if status["alive"] or not live:
        return result
    if status["owner"] is None:
        message = (f"{len(live)} live experiment(s) ({', '.join(live)}) and no rollout controller has ever run: "
                   "nothing will advance, promote or roll them back. Start `ratchet controller run` (or "
                   "`ratchet schedule run`, the systemd unit or the Kubernetes Deployment in deploy/).")
    else:
        message = (f"The rollout controller ({status['owner']}) last beat {status['heartbeat_age_s']:.0f} s ago and "
                   f"{len(live)} experiment(s) are live ({', '.join(live)}): they are neither advanced nor rolled "
                   "back. Restart it (`ratchet controller run`; `systemctl status ratchet-controller`).")
    result.alerts.append(Alert("critical", "Rollout Controller Down", message,
                               {**status, "live_experiments": live, "check": NAME}, condition=f"{NAME}/down"))
    return result
