"""The typed settings object: every knob Ratchet reads, with its default.

Values come from ``ratchet.toml`` and ``RATCHET_*`` environment variables
(nested keys joined by ``__``, e.g. ``RATCHET_LM__MODEL``); the environment
wins. Secrets (API keys, SMTP passwords, webhook URLs) are never read from the
file: model sections name the *environment variable* that holds the key.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

__all__ = [
    "LMSettings",
    "LocalModelSettings",
    "ModelSettings",
    "ServeSettings",
    "Settings",
    "TelemetrySettings",
    "ThresholdSettings",
]

AdapterName = Literal["auto", "completion", "chat", "json"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Section):
    """One language model: the task model, or a prompt/teacher/reflection/fallback model."""

    model: str = Field("local", min_length=1, description="'local' (embedded Gemma) or a LiteLLM model string")
    adapter: AdapterName = Field("auto", description="auto = completion for base models, chat otherwise")
    model_type: Literal["chat", "text"] = "chat"
    constrain_outputs: bool = Field(True, description="embedded model: decode only well-formed answers (grammar)")
    api_base: str | None = Field(None, description="OpenAI-compatible server URL, e.g. a vLLM endpoint")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, gt=0, le=32768)
    timeout_s: float = Field(60.0, gt=0)
    num_retries: int = Field(3, ge=0, le=10)
    cache: bool = True
    input_cost_per_1m_usd: float | None = Field(None, ge=0, description="price override for cost estimates")
    output_cost_per_1m_usd: float | None = Field(None, ge=0)

    @property
    def is_local(self) -> bool:
        return self.model == "local"


class LocalModelSettings(_Section):
    """The embedded llama.cpp model used when ``model = "local"``."""

    model_path: Path | None = Field(None, description="a GGUF file; default: bundled Gemma 3 270M Q4_K_M")
    n_ctx: int = Field(4096, ge=256, le=131072)
    n_threads: int = Field(0, ge=0, description="0 = all cores")
    n_batch: int = Field(512, ge=8)
    pool_size: int = Field(1, ge=1, le=16, description="llama.cpp instances; each holds its own weights")
    seed: int = 0


class LMSettings(ModelSettings):
    """The task model plus the optional models optimizers and serving use."""

    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    prompt: ModelSettings | None = Field(None, description="instruction-proposal model; default: task model")
    teacher: ModelSettings | None = Field(None, description="bootstrapping teacher; default: task model")
    reflection: ModelSettings | None = Field(None, description="GEPA reflection model; default: prompt model")
    fallback: ModelSettings | None = Field(None, description="used by serving when the task model fails")


class TelemetrySettings(_Section):
    """Sampling and storage of live calls (filled in by the serving capability)."""

    enabled: bool = True
    sampling_rate: float = Field(0.10, ge=0.0, le=1.0)
    per_signature: dict[str, float] = Field(default_factory=dict)
    max_file_mb: float = Field(100.0, gt=0)
    max_age_days: float = Field(90.0, gt=0)
    compress_rotated: bool = True
    redact_patterns: dict[str, str] = Field(default_factory=dict, description="extra PII regexes by kind")
    queue_size: int = Field(10_000, ge=1, description="records buffered before new ones are dropped")
    flush_interval_s: float = Field(0.5, gt=0, le=60)

    @field_validator("redact_patterns")
    @classmethod
    def _patterns_compile(cls, value: dict[str, str]) -> dict[str, str]:
        for kind, pattern in value.items():
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"pattern for {kind!r} is not a valid regular expression: {exc}") from None
        return value

    @field_validator("per_signature")
    @classmethod
    def _rates_in_range(cls, value: dict[str, float]) -> dict[str, float]:
        for name, rate in value.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"sampling rate for {name!r} must be between 0 and 1, got {rate}")
        return value


class ServeSettings(_Section):
    """The serving runtime and its HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    request_timeout_s: float = Field(30.0, gt=0, description="an LM call longer than this answers 504")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies answer 413")
    routing_check_interval_s: float = Field(1.0, gt=0, le=5, description="how often the routing file is checked")
    outcome_flush_interval_s: float = Field(1.0, gt=0, le=60, description="per-arm counters are batched this long")
    request_index_days: float = Field(7.0, gt=0, description="how long request ids stay matchable by feedback")


class ThresholdSettings(_Section):
    """Service-level thresholds (seed 000's alert column as defaults)."""

    latency_p50_ms: float = Field(500.0, gt=0)
    latency_p95_ms: float = Field(1000.0, gt=0)
    latency_p99_ms: float = Field(2000.0, gt=0)
    min_success_rate: float = Field(0.95, ge=0, le=1)
    max_tokens_per_request: float = Field(2000.0, gt=0)
    max_cost_per_request_usd: float = Field(0.05, ge=0)
    max_cost_per_hour_usd: float = Field(10.0, ge=0)


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
    lm: LMSettings = Field(default_factory=LMSettings)
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings)
    serve: ServeSettings = Field(default_factory=ServeSettings)
    thresholds: ThresholdSettings = Field(default_factory=ThresholdSettings)

    _config_file: Path | None = PrivateAttr(None)

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
