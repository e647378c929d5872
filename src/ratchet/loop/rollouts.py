"""The rollout controller as the loop runs it: promotions and rollbacks announced on the alert channels.

:mod:`ratchet.rollout` decides and changes state; it does not know the monitor. Everything in the loop and
the CLI that acts on experiments — ``ratchet ab``, the cycle's deploy, the supervising controller — builds
its controller here, so every promotion and rollback is announced once, on every configured channel
(:func:`ratchet.monitor.rollout_alerts.announce_outcome`; the web console passes the same).
"""

from __future__ import annotations

from ratchet.config import Settings
from ratchet.monitor.rollout_alerts import announce_outcome
from ratchet.programs.registry import ProgramRegistry
from ratchet.rollout import RolloutController
from ratchet.store.db import StateDB

__all__ = ["announce_outcome", "rollout_controller"]


def rollout_controller(settings: Settings, registry: ProgramRegistry, *, db: StateDB | None = None
                       ) -> RolloutController:
    """A :class:`RolloutController` whose promotions and rollbacks raise alerts."""
    return RolloutController(settings, registry, db=db, notify=announce_outcome(settings))
