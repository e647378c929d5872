"""The channels a configuration asks for: file and log per flags, Slack, e-mail and webhook when enabled."""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import SecretStr

from ratchet.config import Settings
from ratchet.errors import ConfigError
from ratchet.monitor.channels.base import Channel
from ratchet.monitor.channels.email import EmailChannel
from ratchet.monitor.channels.file import FileChannel
from ratchet.monitor.channels.log import LogChannel
from ratchet.monitor.channels.slack import SlackChannel
from ratchet.monitor.channels.webhook import WebhookChannel

__all__ = ["build_channels"]


def build_channels(settings: Settings) -> list[Channel]:
    """Every configured channel; a channel that is enabled but lacks its secret or recipients is a ConfigError."""
    monitor = settings.monitor
    timeout = monitor.channel_timeout_s
    channels: list[Channel] = []
    if monitor.file_alerts:
        channels.append(FileChannel(settings.home_dir / "alerts"))
    if monitor.log_alerts:
        channels.append(LogChannel())
    if monitor.slack_enabled:
        url = _secret_url(monitor.slack_webhook_url, "slack_enabled", "slack_webhook_url")
        channels.append(SlackChannel(url, timeout_s=timeout))
    if monitor.email_enabled:
        if not monitor.email_to:
            raise ConfigError("monitor.email_enabled is true but monitor.email_to lists no recipients "
                              "(set email_to in [monitor] or RATCHET_MONITOR__EMAIL_TO='[\"team@example.com\"]')")
        password = monitor.smtp_password.get_secret_value() if monitor.smtp_password else None
        if monitor.smtp_username and not password:
            raise ConfigError(f"monitor.smtp_username is set ({monitor.smtp_username}) but monitor.smtp_password is "
                              "not: export RATCHET_MONITOR__SMTP_PASSWORD")
        channels.append(EmailChannel(
            monitor.smtp_host, monitor.smtp_port, sender=monitor.email_from, recipients=monitor.email_to,
            starttls=monitor.smtp_starttls, use_ssl=monitor.smtp_ssl, username=monitor.smtp_username,
            password=password, timeout_s=timeout))
    if monitor.webhook_enabled:
        url = _secret_url(monitor.webhook_url, "webhook_enabled", "webhook_url")
        channels.append(WebhookChannel(url, timeout_s=timeout))
    return channels


def _secret_url(value: SecretStr | None, flag: str, key: str) -> str:
    env = f"RATCHET_MONITOR__{key.upper()}"
    url = value.get_secret_value() if value is not None else ""
    if not url:
        raise ConfigError(f"monitor.{flag} is true but monitor.{key} is not set: export {env} "
                          "(secrets are read from the environment only)")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"monitor.{key} (from {env}) must be an http(s) URL, got one with scheme "
                          f"{parts.scheme or 'none'!r}")
    return url
