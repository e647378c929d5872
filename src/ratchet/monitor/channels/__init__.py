"""Alert channels: ``base.py`` holds the interface, one file per channel, ``factory.py`` builds them from settings."""

from ratchet.monitor.channels.base import Channel
from ratchet.monitor.channels.email import EmailChannel
from ratchet.monitor.channels.factory import build_channels
from ratchet.monitor.channels.file import FileChannel
from ratchet.monitor.channels.log import LogChannel
from ratchet.monitor.channels.slack import SlackChannel
from ratchet.monitor.channels.webhook import WebhookChannel

__all__ = ["Channel", "EmailChannel", "FileChannel", "LogChannel", "SlackChannel", "WebhookChannel",
           "build_channels"]
