"""Monitoring: alerts and their channels, the dispatcher with cooldowns and resolution, the state file.

The checks (``ratchet.monitor.checks``) and the dashboard (``ratchet.monitor.dashboard``) read
the other packages' state and are imported from their modules.
"""

from ratchet.monitor.alerts import LEVELS, Alert, level_rank
from ratchet.monitor.channels import Channel, build_channels
from ratchet.monitor.dispatch import AlertDispatcher, ChannelResult, Delivery
from ratchet.monitor.results import CheckResult, worst_level
from ratchet.monitor.state import STATE_FILENAME, MonitoringState

__all__ = ["LEVELS", "STATE_FILENAME", "Alert", "AlertDispatcher", "Channel", "ChannelResult", "CheckResult",
           "Delivery", "MonitoringState", "build_channels", "level_rank", "worst_level"]
