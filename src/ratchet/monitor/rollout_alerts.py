"""Announcing the end of an experiment: a ``notify`` for :class:`~ratchet.rollout.RolloutController` that sends
"A/B Test Promoted / Rolled Back" on every configured alert channel.

:mod:`ratchet.rollout` decides and changes state; it does not know the monitor. Whatever acts on experiments
from above both — the loop's controller (:func:`ratchet.loop.rollouts.rollout_controller`, which the CLI's
``ratchet ab`` and the cycle's deploy use), the web console and the HTTP API of the whole server
(:func:`ratchet.console.server.create_server`) — passes this, so every promotion and rollback
is announced once. ``check-ab-tests`` uses the same condition keys, so it does not repeat them.
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
from ratchet.rollout import Experiment

__all__ = ["announce_outcome"]

log = logging.getLogger(__name__)


def announce_outcome(settings: Settings) -> Callable[[Experiment], None]:
    """A ``notify`` for :class:`RolloutController` that sends "A/B Test Promoted / Rolled Back" alerts."""

    def notify(exp: Experiment) -> None:
        alert = rollback_alert(exp) if exp.status == "rolled_back" else promotion_alert(exp)
        try:
            dispatcher = AlertDispatcher.from_settings(settings)
        except RatchetError as exc:  # a misconfigured channel must not cost the alert: file and log still work
            log.error("alert channels: %s; sending to file and log only", exc)
            dispatcher = AlertDispatcher(settings, [FileChannel(settings.home_dir / "alerts"), LogChannel()])
        dispatcher.dispatch([CheckResult(name="rollout", events=[alert])])

    return notify
