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

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ratchet.config.limits import LimitsSettings
from ratchet.guard.rules import select_rules

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

AdapterName = Literal["auto", "completion", "chat", "json"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSettings(_Section):
    """One language model: the task model, or a prompt/teacher/reflection/fallback model."""

    model: str = Field("local", min_length=1, description="'local' (embedded Gemma) or a LiteLLM model string")
    adapter: AdapterName = Field("auto", description="auto = completion for base models, chat otherwise")
    model_type: Literal["chat", "text"] = "chat"
    constrain_outputs: bool = Field(
        True, description="embedded model: decode answers with several or typed output fields under a grammar of "
                          "their shape (zero-shot from the first call; with demos as the retry)")
    choice_scoring: Literal["off", "likelihood", "calibrated"] = Field(
        "calibrated", description="embedded model: answer single-choice outputs by scoring the choices")
    api_base: str | None = Field(None, description="OpenAI-compatible server URL, e.g. a vLLM endpoint")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, gt=0, le=32768)
    timeout_s: float = Field(60.0, gt=0)
    num_retries: int = Field(3, ge=0, le=10)
    cache: bool = Field(True, description="DSPy's response cache for this model; serving caches only with "
                                          "serve.lm_cache = 'memory'")
    base_model: bool | None = Field(
        None, description="a base (completion) model, whose demos matter most: the auto optimizer searches them "
                          "first; default: true for the embedded model and for adapter = 'completion'")
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
    pool_size: int = Field(1, ge=1, le=16, description="calls computed at once (1 = serialised)")
    cache_slots: int = Field(2, ge=1, le=16, description="llama.cpp contexts kept (at least pool_size), each "
                                                       "holding one prompt prefix; the prompt cache keeps the others")
    prompt_cache_mb: int | None = Field(
        0, ge=0, le=65_536, description="memory for the KV caches of the prompt prefixes served (each program "
                                        "and A/B arm keeps its own), restored in milliseconds instead of "
                                        "recomputed; unset = two full contexts' worth (~89 MB for the bundled "
                                        "model at n_ctx 4096); 0 = off, the default until a calibrated-scoring "
                                        "collapse seen once after restores is explained (issue 17)")
    seed: int = 0
    extra_buffers: Literal["auto", "on", "off"] = Field(
        "auto", description="llama.cpp weight repacking at load: auto = off on CPUs with AMX (it crashes there), "
                            "on elsewhere")
    self_test: bool = Field(True, description="load the model once in a child process first, so a llama.cpp "
                                              "crash is a clear error (remembered per library, weights and CPU)")


class LMSettings(ModelSettings):
    """The task model plus the optional models optimizers and serving use."""

    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    prompt: ModelSettings | None = Field(None, description="instruction-proposal model; default: task model")
    teacher: ModelSettings | None = Field(None, description="bootstrapping teacher; default: task model")
    reflection: ModelSettings | None = Field(None, description="GEPA reflection model; default: prompt model")
    fallback: ModelSettings | None = Field(None, description="used by serving when the task model fails")


OptimizerName = Literal["auto", "mipro", "bootstrap", "bootstrap-rs", "labeled", "gepa", "simba"]


class OptimizeSettings(_Section):
    """Defaults of ``ratchet optimize`` and of the cycle's optimize phase."""

    optimizer: OptimizerName = Field("auto", description="auto = demo search, then budgeted MIPROv2 instructions "
                                                         "for base models; MIPROv2 for chat models")
    budget_minutes: float | None = Field(None, gt=0, description="time limit of one optimization (auto); default: "
                                         "the demo search, then instructions for instruction_share of its time")
    instruction_share: float = Field(0.5, ge=0, le=10, description="auto without a budget: the instruction "
                                     "search's time as a share of the demo search's")


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
    sink: Literal["files", "database", "auto"] = Field(
        "files", description="where sampled records go: files under the home, or the state database's "
        "telemetry_records table, which every host shares (set it with several hosts on one PostgreSQL); "
        "auto = database with PostgreSQL, files with SQLite")

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


class GateThresholds(_Section):
    """Quality-gate thresholds of one signature (seed 001's table supplies defaults for its signatures)."""

    min_quality: float = Field(70.0, ge=0, le=100, description="every example's quality score at least this")
    difficulty_targets: dict[str, float] = Field(default_factory=lambda: {"easy": 0.3, "medium": 0.5, "hard": 0.2})
    difficulty_tolerance: float = Field(0.10, ge=0, le=1, description="allowed distance from each target share")
    completeness_targets: dict[str, float] | None = Field(
        None, description="share of complete/incomplete examples, e.g. {complete = 0.4, incomplete = 0.6}")
    min_categories: int = Field(3, ge=1)
    max_source_share: float = Field(0.80, gt=0, le=1, description="no single source above this share")


class DataSettings(_Section):
    """Validation, deduplication, gates and the versioned dataset store."""

    near_duplicate_threshold: float = Field(0.8, gt=0, le=1, description="Jaccard similarity of near-duplicates")
    minhash_permutations: int = Field(128, ge=16, le=1024)
    shingle_size: int = Field(3, ge=1, le=10, description="characters per shingle for near-duplicate detection")
    max_field_chars: int = Field(20_000, ge=10, description="longer field values are rejected")
    split_ratios: dict[str, float] = Field(default_factory=lambda: {"train": 0.6, "dev": 0.2, "test": 0.2})
    gates: dict[str, GateThresholds] = Field(default_factory=dict, description="per-signature gate thresholds")
    default_gate: GateThresholds = Field(default_factory=GateThresholds)
    archive_after_days: float = Field(90.0, gt=0)
    keep_versions: int = Field(5, ge=1)
    max_feedback_per_key: int | None = Field(
        None, ge=1, description="collection labels at most this many requests from one API key's feedback (none: "
                                "no bound)")

    @field_validator("split_ratios")
    @classmethod
    def _splits(cls, value: dict[str, float]) -> dict[str, float]:
        if set(value) != {"train", "dev", "test"}:
            raise ValueError("split_ratios needs exactly train, dev and test")
        if any(v < 0 for v in value.values()) or abs(sum(value.values()) - 1.0) > 1e-6:
            raise ValueError(f"split ratios must be non-negative and sum to 1, got {value}")
        return value


class RolloutSettings(_Section):
    """Gradual A/B rollouts: stages, stage gates, rollback triggers (seed 001's values as defaults)."""

    stages: list[int] = Field(default_factory=lambda: [10, 25, 50, 75, 100],
                              description="candidate traffic percent per stage; reaching 100 promotes")
    min_stage_minutes: float = Field(60.0, ge=0)
    min_stage_requests: int = Field(100, ge=1, description="candidate requests a stage needs before advancing")
    max_error_rate_increase: float = Field(0.05, gt=0, le=1, description="roll back above +5 points")
    max_latency_increase_ms: float = Field(500.0, gt=0, description="roll back above +500 ms mean latency")
    min_quality: float = Field(0.70, ge=0, le=1, description="roll back when candidate quality is below this")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="error level of the anytime-valid tests")
    catastrophe_window: int = Field(20, ge=4, description="roll back at once if most of these first requests fail")
    check_interval_s: float = Field(30.0, gt=0, description="how often `ab monitor --daemon` looks")
    lease_ttl_s: float = Field(90.0, gt=0, description="a monitor's claim on an experiment expires after this")
    start_in_shadow: bool = Field(True, description="experiments (the cycle's and `ab start`'s) begin in shadow: "
                                                    "the candidate answers unseen before it serves anyone")
    shadow_share: float = Field(0.25, gt=0, le=1, description="share of production requests the candidate also "
                                                             "answers in shadow (its answers are never returned)")
    shadow_min_requests: int = Field(50, ge=1, description="shadow calls needed before the first traffic stage")
    shadow_min_minutes: float = Field(15.0, ge=0, description="minutes in shadow before the first traffic stage")
    max_shadow_calls_per_minute: int = Field(60, ge=1, description="cap per serving process (shadow calls cost LM "
                                                                    "calls); requests over it are not shadowed")
    min_agreement: float = Field(0.3, ge=0, le=1, description="roll back in shadow when the candidate clearly "
                                                              "agrees with production less often than this")

    max_feedback_per_key: int | None = Field(
        None, ge=1, description="the quality trigger counts at most this many feedback scores from one API key per "
                                "arm (none: no bound); bounds what one leaked or misbehaving key can steer")

    @field_validator("stages")
    @classmethod
    def _stages(cls, value: list[int]) -> list[int]:
        if not value or any(not 0 < v <= 100 for v in value) or value != sorted(set(value)):
            raise ValueError(f"stages must be increasing percents in 1..100, got {value}")
        return value


class ServeSettings(_Section):
    """The serving runtime and its HTTP API."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    request_timeout_s: float = Field(30.0, gt=0, description="an LM call longer than this answers 504")
    max_body_bytes: int = Field(1_048_576, ge=1024, description="larger request bodies answer 413")
    console: bool = Field(True, description="`ratchet serve` also serves the web console under /ui (same keys and "
                                           "roles as the API)")
    routing_check_interval_s: float = Field(1.0, gt=0, le=5, description="how often the routing file is checked")
    outcome_flush_interval_s: float = Field(1.0, gt=0, le=60, description="per-arm counters are batched this long")
    request_index_days: float = Field(
        7.0, gt=0, description="feedback on a request is accepted this long after it was served, then refused")
    lm_cache: Literal["off", "memory"] = Field(
        "off", description="DSPy's response cache while serving: off, or an in-memory LRU (never on disk)")
    lm_cache_entries: int = Field(1000, ge=1, le=100_000,
                                  description="answers the memory cache keeps per process (least recently used go)")
    max_concurrent_calls: int = Field(
        0, ge=0, le=10_000, description="program calls running at once per process; 0 = auto: 4 × lm.local.pool_size "
                                        "with the embedded model, 64 otherwise")
    queue_wait_s: float = Field(1.0, ge=0, le=60, description="a request waits this long for a call slot, then answers "
                                                             "503 overloaded")


class AuthSettings(_Section):
    """API keys on the HTTP API (``ratchet keys``)."""

    mode: Literal["auto", "required", "off"] = Field(
        "auto", description="auto: keys required when serve.host is not a loopback address; required: always; "
                            "off: never (logged and audited at start when the server is reachable from other hosts)")
    cache_seconds: float = Field(5.0, ge=0, le=300, description="a key's database row is re-read after this long, so "
                                                                "a revoked key stops working within it")
    max_key_age_days: float = Field(90.0, gt=0, description="the keys check warns about keys older than this")
    max_unused_days: float = Field(30.0, gt=0, description="the keys check warns about keys unused this long")


class OtelSettings(_Section):
    """OpenTelemetry: one OTLP span per served request, after the GenAI semantic conventions (docs/operations.md).

    The SDK's own ``OTEL_*`` variables still apply where Ratchet sets nothing (``OTEL_BSP_*`` for the batch queue,
    ``OTEL_EXPORTER_OTLP_TIMEOUT``, ``OTEL_RESOURCE_ATTRIBUTES``, and ``OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT`` when
    ``endpoint`` is unset).
    """

    enabled: bool = Field(False, description="export a span per served request (nothing is imported when off)")
    endpoint: str | None = Field(
        None, description="the receiver: http/protobuf takes a base URL (/v1/traces is appended unless present), "
                          "grpc host:port; default: OTEL_EXPORTER_OTLP_* or localhost (4318 / 4317)")
    protocol: Literal["http/protobuf", "grpc"] = Field(
        "http/protobuf", description="grpc needs the extra ratchet[otel-grpc]")
    service_name: str = Field("ratchet", min_length=1, description="the resource's service.name")
    headers: SecretStr | None = Field(None, description="env RATCHET_OTEL__HEADERS: 'key=value,key2=value2' sent "
                                                        "with every export (e.g. an Authorization header)")
    include_content: bool = Field(False, description="add inputs and outputs to spans, PII-redacted as telemetry is")
    max_content_chars: int = Field(2000, ge=16, le=1_000_000,
                                   description="with include_content: each input/output value is cut to this")
    sampling_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of traces started here that are "
                                                                  "exported; a caller's sampled flag decides its own")

    @field_validator("headers")
    @classmethod
    def _headers_are_pairs(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            for item in filter(None, (part.strip() for part in value.get_secret_value().split(","))):
                if "=" not in item or not item.split("=", 1)[0].strip():
                    raise ValueError("otel.headers must be 'key=value' pairs separated by commas")  # never the value
        return value


GuardMode = Literal["block", "flag", "off"]


class GuardSignatureSettings(_Section):
    """The injection guard of one signature (``[guard.signatures.<name>]``): its keys over ``[guard]``'s."""

    mode: GuardMode = Field("block", description="block: refuse with 400 injection_blocked; flag: serve, count and "
                                                 "log; off: do not look")
    rules: dict[str, str] = Field(default_factory=dict, description="extra rules: reason code → regular expression "
                                  "over the normalised (lower-cased) text")
    disabled_rules: list[str] = Field(default_factory=list, description="shipped or extra rules not applied")

    @field_validator("rules")
    @classmethod
    def _rules_compile(cls, value: dict[str, str]) -> dict[str, str]:
        select_rules(value)  # raises ValueError naming the rule and what is wrong with it
        return value



class GuardSettings(GuardSignatureSettings):
    """The L1 prompt-injection guard in front of every program call (per signature overridable)."""

    excerpt_chars: int = Field(40, ge=0, le=200, description="the matched words logged with injection_detected "
                                                             "(PII-redacted; 0 logs none)")
    signatures: dict[str, GuardSignatureSettings] = Field(default_factory=dict,
                                                          description="per-signature guard overrides")

    @field_validator("disabled_rules")
    @classmethod
    def _disabled_rules_exist(cls, value: list[str], info: ValidationInfo) -> list[str]:
        select_rules(info.data.get("rules") or {}, value)
        return value

    @model_validator(mode="after")
    def _signature_rules_exist(self) -> GuardSettings:
        for name in self.signatures:
            own = self.for_signature(name)
            try:
                select_rules(own.rules, own.disabled_rules)
            except ValueError as exc:
                raise ValueError(f"guard.signatures.{name}.disabled_rules: {exc}") from None
        return self

    def for_signature(self, signature: str) -> GuardSignatureSettings:
        """The guard of ``signature``: ``[guard]``, with its ``[guard.signatures.<name>]`` mode over it and its rules
        and disabled rules added (an extra rule of the same name replaces ``[guard]``'s)."""
        own = self.signatures.get(signature)
        if own is None:
            return GuardSignatureSettings(mode=self.mode, rules=self.rules, disabled_rules=self.disabled_rules)
        mode = own.mode if "mode" in own.model_fields_set else self.mode
        return GuardSignatureSettings(mode=mode, rules={**self.rules, **own.rules},
                                      disabled_rules=[*self.disabled_rules, *own.disabled_rules])


SECRET_KEYS = ("backup_key", "secret_key", "monitor.slack_webhook_url", "monitor.smtp_password", "monitor.webhook_url",
               "otel.headers")
"""Settings that hold secrets: read only from RATCHET_* environment variables, never from ratchet.toml."""


class DriftSettings(_Section):
    """`ratchet monitor check-drift`: live inputs and outputs against the production version's training data.

    The defaults are calibrated on Banking77 (``benchmarks/drift_validation.py``, docs/benchmarks.md).
    """

    window_hours: float = Field(24.0, gt=0, description="live calls of the last this many hours are compared")
    min_samples: int = Field(100, ge=10, description="live calls a verdict needs")
    max_samples: int = Field(2000, ge=10, description="at most the newest this many live calls are compared")
    psi_threshold: float = Field(0.4, gt=0, description="output label PSI above this (and significant) → drift")
    similarity_threshold: float = Field(0.35, gt=0, le=1, description="an input whose best Jaccard similarity to "
                                        "every training input is below this is novel")
    novelty_margin: float = Field(0.05, ge=0, lt=1, description="novel share above the held-out share by more than "
                                  "this (at confidence 1 - alpha) → drift")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="error level of the one-sided tests")

    @model_validator(mode="after")
    def _room_for_a_verdict(self) -> DriftSettings:
        if self.max_samples < self.min_samples:
            raise ValueError(f"max_samples ({self.max_samples}) is below min_samples ({self.min_samples}): "
                             "no window could ever be judged")
        return self


class CanarySettings(_Section):
    """Canaries: a fixed probe set per signature, scored on production and every live candidate.

    ``ratchet canary run`` (and the controller, every ``interval_minutes``) scores the versions;
    the rollout trigger and the degradation signal judge the scores.
    """

    enabled: bool = Field(True, description="run canaries when due (the controller's periodic run)")
    interval_minutes: float = Field(30.0, gt=0, description="a signature's versions are scored again after this")
    probes: int = Field(100, ge=5, le=10_000, description="probes sampled for a new probe set")
    seed: int = Field(0, description="seed of the probe sample")
    probe_files: dict[str, Path] = Field(default_factory=dict, description="per signature: your own probe file "
                                         "(labelled examples, .jsonl/.json/.csv) instead of a sample")
    max_candidate_drop: float = Field(0.05, gt=0, le=1, description="rollout trigger: the candidate scores more "
                                      "than this below its baseline on the same probes (and significantly)")
    max_production_drop: float = Field(0.05, gt=0, le=1, description="degradation: production scores more than "
                                       "this below its own trailing runs (and significantly)")
    trailing_runs: int = Field(6, ge=2, le=100, description="production's latest run is compared with the "
                               "per-probe mean of at most this many earlier runs")
    min_probes: int = Field(20, ge=5, description="a comparison needs at least this many probes scored by both")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="error level of the paired tests")


class MonitorSettings(_Section):
    """Checks and alert channels (seed 001's monitoring_config.json as defaults)."""

    file_alerts: bool = True
    log_alerts: bool = True
    slack_enabled: bool = False
    slack_webhook_url: SecretStr | None = Field(None, description="env RATCHET_MONITOR__SLACK_WEBHOOK_URL")
    email_enabled: bool = False
    smtp_host: str = "localhost"
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_starttls: bool = Field(True, description="STARTTLS after connecting (port 587)")
    smtp_ssl: bool = Field(False, description="implicit TLS from the start (port 465)")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = Field(None, description="env RATCHET_MONITOR__SMTP_PASSWORD")
    email_from: str = "ratchet@localhost"
    email_to: list[str] = Field(default_factory=list)
    webhook_enabled: bool = False
    webhook_url: SecretStr | None = Field(None, description="env RATCHET_MONITOR__WEBHOOK_URL")
    cooldown_minutes: float = Field(60.0, ge=0, description="an active alert is not re-sent within this")
    retry_attempts: int = Field(3, ge=1, le=10)
    retry_backoff_s: float = Field(1.0, ge=0)
    channel_timeout_s: float = Field(10.0, gt=0)
    orchestration_failure_threshold: int = Field(2, ge=1, description="consecutive failed cycles → error")
    optimization_no_improvement_months: float = Field(3.0, gt=0, description="no deployed improvement → warning")
    experiment_long_running_days: float = Field(7.0, gt=0, description="a live experiment older than this → info")
    dataset_quality_drop_threshold: float = Field(0.10, gt=0, le=1, description="quality drop between versions")
    slo_window_minutes: float = Field(60.0, gt=0, description="live service levels are judged over this window")
    drift: DriftSettings = Field(default_factory=DriftSettings)
    canary: CanarySettings = Field(default_factory=CanarySettings)


class TriggerSettings(_Section):
    """When a signature is re-optimized by itself (seed 003's OptimizationConfig names and defaults)."""

    enable_automatic_optimization: bool = Field(True, description="the controller starts cycles when a trigger "
                                                                  "fires (the monthly cron runs regardless)")
    performance_degradation_threshold: float = Field(
        0.15, gt=0, lt=1, description="relative drop of production's success rate or feedback quality against its "
                                      "own trailing baseline (lower confidence bound) that starts a cycle")
    feedback_volume_threshold: int = Field(50, ge=1, description="new feedback on a signature's requests since its "
                                                                 "last cycle that starts one")
    optimization_interval_hours: float = Field(24.0, gt=0, description="never start a cycle of a signature more "
                                                                       "often than this")


class LoopSettings(TriggerSettings):
    """The self-driving loop: live triggers (per signature overridable) and the deploy rule's confidence."""

    min_confidence_for_deployment: float = Field(
        0.8, gt=0.5, lt=1, description="confidence level of the deploy rule's paired interval (seed 003: 0.8)")
    trigger_check_interval_s: float = Field(60.0, gt=0, description="how often the controller evaluates triggers")
    degradation_window_minutes: float = Field(60.0, gt=0, description="recent traffic judged for degradation")
    baseline_window_hours: float = Field(168.0, gt=0, description="the trailing baseline it is compared with "
                                                                  "(before the recent window)")
    min_degradation_requests: int = Field(30, ge=1, description="requests (or feedback scores) each window needs "
                                                                "before degradation is judged")
    signatures: dict[str, TriggerSettings] = Field(default_factory=dict,
                                                   description="per-signature trigger overrides")

    def for_signature(self, signature: str) -> TriggerSettings:
        """The trigger settings of ``signature``: the ``[loop]`` values, with its ``[loop.signatures.<name>]`` keys over
        them."""
        values = {name: getattr(self, name) for name in TriggerSettings.model_fields}
        own = self.signatures.get(signature)
        if own is not None:
            values.update({name: getattr(own, name) for name in own.model_fields_set})
        return TriggerSettings(**values)


class FlywheelSettings(_Section):
    """The human flywheel: how old an annotation backlog may grow before the annotation check warns, how phase 2
    divides annotated cases between the golden set and the training data, and when the daily eval regression on
    the golden sets calls a drop significant."""

    max_backlog_age_days: float = Field(7.0, gt=0, description="the annotation check warns when a signature's oldest "
                                                               "waiting annotation task is older than this")
    golden_share: float = Field(0.5, ge=0, le=1, description="phase 2 (`ratchet flywheel run --continue`): the share "
                                "of annotated cases that grow the golden set (a stable draw by their inputs); the "
                                "rest join the training data, never both")
    golden_alpha: float = Field(0.05, gt=0, lt=0.5, description="eval regression: error level of the paired "
                                "interval and test comparing golden-set scores with the previous run")
    golden_min_drop: float = Field(0.0, ge=0, le=1, description="eval regression: a drop counts only when the "
                                   "interval's upper bound lies below minus this (0: any significant drop)")


class ScheduleSettings(_Section):
    """`ratchet schedule run`: when the monthly cycle, the hourly checks, the weekly cleanup, the weekly flywheel
    triage and the daily eval regression run."""

    cycle_cron: str = "0 2 1 * *"
    checks_cron: str = "0 * * * *"
    cleanup_cron: str = "0 3 * * 0"
    flywheel_cron: str = Field("0 6 * * 1", description="`ratchet flywheel run --week last`: triage of the week "
                                                          "that just ended, queueing annotation tasks")
    eval_regression_cron: str = Field("30 5 * * *", description="`ratchet eval-regression`: production and any "
                                      "live candidate scored on each golden set, against the previous run")
    timezone: str = "UTC"
    cycle_args: list[str] = Field(default_factory=list, description="extra `ratchet cycle` options")
    run_controller: bool = Field(True, description="`schedule run` also keeps `ratchet controller run` running "
                                                   "(and `schedule crontab` runs one pass a minute)")


class RetentionSettings(_Section):
    """`ratchet cleanup`: how long runs, alerts and the DSPy cache are kept (telemetry and datasets have their own)."""

    runs_days: float = Field(90.0, gt=0)
    alerts_days: float = Field(90.0, gt=0)
    request_index_days: float = Field(
        7.0, gt=0, description="request-index and feedback rows (experiment quality) are deleted after this; "
                               "at least serve.request_index_days")
    counters_days: float = Field(400.0, gt=0, description="per-arm per-minute counters")
    canary_days: float = Field(90.0, gt=0, description="canary runs (production's degradation reads only its last "
                                                       "monitor.canary.trailing_runs)")
    dspy_cache_days: float = Field(30.0, gt=0, description="DSPy's disk cache of optimization and evaluation "
                                                        "(<home>/cache/dspy), removed when unused this long")
    eval_reports_days: float = Field(180.0, gt=0, description="golden-set evaluation reports (<home>/eval_reports); "
                                                           "each signature's newest is always kept (the next run "
                                                           "pairs with it)")


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
