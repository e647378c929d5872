"""The typed settings object: every knob Ratchet reads, with its default.

Values come from ``ratchet.toml`` and ``RATCHET_*`` environment variables
(nested keys joined by ``__``, e.g. ``RATCHET_LM__MODEL``); the environment
wins. Secrets (API keys, SMTP passwords, webhook URLs) are never read from the
file: model sections name the *environment variable* that holds the key.

The sections are declared by domain (:mod:`ratchet.config.models`, :mod:`ratchet.config.serving`,
:mod:`ratchet.config.operations`, :mod:`ratchet.config.limits`) and re-exported here.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PrivateAttr, SecretStr, model_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ratchet.config.limits import LimitsSettings
from ratchet.config.models import LMSettings, LocalModelSettings, ModelSettings, OptimizeSettings
from ratchet.config.operations import (
    CanarySettings,
    DriftSettings,
    FlywheelSettings,
    LoopSettings,
    MonitorSettings,
    RetentionSettings,
    ScheduleSettings,
    ThresholdSettings,
    TriggerSettings,
)
from ratchet.config.serving import (
    AuthSettings,
    DataSettings,
    GateThresholds,
    GuardSettings,
    GuardSignatureSettings,
    OtelSettings,
    RolloutSettings,
    ServeSettings,
    TelemetrySettings,
)

__all__ = [
    "SECRET_KEYS",
    "AuthSettings",
    "CanarySettings",
    "DataSettings",
    "DriftSettings",
    "FlywheelSettings",
    "GateThresholds",
    "GuardSettings",
    "GuardSignatureSettings",
    "LMSettings",
    "LocalModelSettings",
    "LoopSettings",
    "ModelSettings",
    "MonitorSettings",
    "OptimizeSettings",
    "OtelSettings",
    "RetentionSettings",
    "RolloutSettings",
    "ScheduleSettings",
    "ServeSettings",
    "Settings",
    "TelemetrySettings",
    "ThresholdSettings",
    "TriggerSettings",
]

SECRET_KEYS = ("backup_key", "secret_key", "monitor.slack_webhook_url", "monitor.smtp_password", "monitor.webhook_url",
               "otel.headers")
"""Settings that hold secrets: read only from RATCHET_* environment variables, never from ratchet.toml."""


class Settings(BaseSettings):
    """Everything Ratchet reads from ``ratchet.toml`` and ``RATCHET_*``."""

    model_config = SettingsConfigDict(
        env_prefix="RATCHET_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
    )

    home: Path = Field(Path(".ratchet"), description="storage home: telemetry, datasets, versions, state DB")
    programs: list[str] = Field(
        default_factory=lambda: ["ratchet.examples"],
        description="modules (dotted names) or .py files that register programs",
    )
    database_url: str | None = Field(None, description="SQLAlchemy URL; default: SQLite in the home directory")
    backup_key: SecretStr | None = Field(None, description="env RATCHET_BACKUP_KEY: signs backups (HMAC-SHA256); "
                                                           "restore verifies it")
    secret_key: SecretStr | None = Field(None, description="env RATCHET_SECRET_KEY: the service secret that signs "
                                                           "request ids and keys user pseudonyms (default: a random "
                                                           "one kept in <home>/secrets/service.key)")
    lm: LMSettings = Field(default_factory=LMSettings)
    optimize: OptimizeSettings = Field(default_factory=OptimizeSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    data: DataSettings = Field(default_factory=DataSettings)
    rollout: RolloutSettings = Field(default_factory=RolloutSettings)
    monitor: MonitorSettings = Field(default_factory=MonitorSettings)
    schedule: ScheduleSettings = Field(default_factory=ScheduleSettings)
    loop: LoopSettings = Field(default_factory=LoopSettings)
    flywheel: FlywheelSettings = Field(default_factory=FlywheelSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    thresholds: ThresholdSettings = Field(default_factory=ThresholdSettings)
    guard: GuardSettings = Field(default_factory=GuardSettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    otel: OtelSettings = Field(default_factory=OtelSettings)

    _config_file: Path | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _request_index_outlives_feedback(self) -> Settings:
        kept, window = self.retention.request_index_days, self.serve.request_index_days
        if kept < window:
            raise PydanticCustomError(
                "request_index_retention",
                f"retention.request_index_days ({kept:g}) is shorter than serve.request_index_days ({window:g}): "
                "cleanup would delete request ids that can still receive feedback, which then matches no arm")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment first (wins), then the TOML data passed as init kwargs.
        return (env_settings, init_settings)

    @property
    def config_file(self) -> Path | None:
        """The file these settings were read from, if any."""
        return self._config_file

    @property
    def base_dir(self) -> Path:
        """Directory relative paths in the config are resolved against."""
        return self.config_file.parent if self.config_file else Path.cwd()

    def resolve(self, path: Path) -> Path:
        """Resolve a configured path against the config file's directory."""
        return path if path.is_absolute() else (self.base_dir / path)

    @property
    def home_dir(self) -> Path:
        return self.resolve(self.home)
