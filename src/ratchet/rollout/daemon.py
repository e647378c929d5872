"""``ab monitor``: check an experiment once, or keep checking until it ends.

Only the monitor holding an experiment's lease acts on it; a lease lapses after
``lease_ttl_s`` without renewal, so a crashed monitor's experiment is picked up by
the next one (or by itself after a restart: all state lives in the database).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ratchet.rollout.controller import Decision, RolloutController, default_actor
from ratchet.rollout.experiments import Experiment

__all__ = ["monitor_experiment"]


def monitor_experiment(controller: RolloutController, experiment_id: str, *, daemon: bool = False,
                       interval_s: float | None = None, owner: str | None = None,
                       on_decision: Callable[[Experiment, Decision], None] | None = None,
                       stop: threading.Event | None = None) -> Experiment:
    """Check ``experiment_id`` (repeatedly with ``daemon``) and return it as it ends up."""
    owner = owner or default_actor()
    interval = interval_s if interval_s is not None else controller.settings.rollout.check_interval_s
    ttl = max(controller.settings.rollout.lease_ttl_s, 3 * interval)
    stop = stop or threading.Event()
    store = controller.store
    try:
        while True:
            if store.acquire_lease(experiment_id, owner, ttl):
                decision = controller.check(experiment_id, actor=owner)
            else:
                decision = Decision("hold", "another monitor holds this experiment's lease; watching only")
            experiment = store.get(experiment_id)
            if on_decision is not None:
                on_decision(experiment, decision)
            if not experiment.live or not daemon or stop.wait(interval):
                return experiment
    finally:
        store.release_lease(experiment_id, owner)
