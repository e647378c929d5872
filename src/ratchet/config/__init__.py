"""Configuration: one typed settings object from ``ratchet.toml`` plus ``RATCHET_*`` variables."""

from ratchet.config.loading import CONFIG_ENV, CONFIG_FILENAME, find_config_file, load_settings
from ratchet.config.secrets import MASK, mask_secrets, mask_url, mask_urls_in_text, url_credentials
from ratchet.config.settings import (
    CanarySettings,
    DataSettings,
    DriftSettings,
    GateThresholds,
    LMSettings,
    LocalModelSettings,
    ModelSettings,
    MonitorSettings,
    RetentionSettings,
    RolloutSettings,
    ScheduleSettings,
    ServeSettings,
    Settings,
    TelemetrySettings,
    ThresholdSettings,
)

__all__ = [
    "CONFIG_ENV",
    "CONFIG_FILENAME",
    "MASK",
    "CanarySettings",
    "DataSettings",
    "DriftSettings",
    "GateThresholds",
    "LMSettings",
    "LocalModelSettings",
    "ModelSettings",
    "MonitorSettings",
    "RetentionSettings",
    "RolloutSettings",
    "ScheduleSettings",
    "ServeSettings",
    "Settings",
    "TelemetrySettings",
    "ThresholdSettings",
    "find_config_file",
    "load_settings",
    "mask_secrets",
    "mask_url",
    "mask_urls_in_text",
    "url_credentials",
]
