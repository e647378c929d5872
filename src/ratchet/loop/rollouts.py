"""The rollout controller as the loop runs it: promotions and rollbacks announced on the alert channels.

:mod:`ratchet.rollout` decides and changes state; it does not know the monitor. Everything that acts on
experiments — the CLI's ``ratchet ab``, the cycle's deploy, the supervising controller — builds its
controller here, so every promotion and rollback is announced once, on every configured channel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ratchet.config import Settings
from ratchet.errors import RatchetError
from ratchet.monitor.channels import FileChannel, LogChannel
from ratchet.monitor.checks.ab_tests import promotion_alert, rollback_alert
from ratchet.monitor.dispatch import AlertDispatcher
from ratchet.monitor.results import CheckResult
from ratchet.programs.registry import ProgramRegistry
from ratchet.rollout import Experiment, RolloutController
from ratchet.store.db import StateDB

__all__ = ["announce_outcome", "rollout_controller"]

log = logging.getLogger(__name__)


def announce_outcome(settings: Settings) -> Callable[[Experiment], None]:
    """A ``notify`` for :class:`RolloutController` that sends "A/B Test Promoted / Rolled Back" alerts.

    ``check-ab-tests`` uses the same condition keys, so it does not repeat them.
    """

    def notify(exp: Experiment) -> None:
        alert = rollback_alert(exp) if exp.status == "rolled_back" else promotion_alert(exp)
        try:
            dispatcher = AlertDispatcher.from_settings(settings)
        except RatchetError as exc:  # a misconfigured channel must not cost the alert: file and log still work
            log.error("alert channels: %s; sending to file and log only", exc)
            dispatcher = AlertDispatcher(settings, [FileChannel(settings.home_dir / "alerts"), LogChannel()])
        dispatcher.dispatch([CheckResult(name="rollout", events=[alert])])

    return notify


def rollout_controller(settings: Settings, registry: ProgramRegistry, *, db: StateDB | None = None
                       ) -> RolloutController:
    """A :class:`RolloutController` whose promotions and rollbacks raise alerts."""
    return RolloutController(settings, registry, db=db, notify=announce_outcome(settings))
