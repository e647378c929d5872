"""The serving-side sections: ``[telemetry]``, ``[data]`` (with its gates), ``[rollout]``, ``[serve]``,
``[auth]``, ``[otel]`` and ``[guard]``."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from ratchet.config.section import Section
from ratchet.guard.rules import select_rules

__all__ = [
    "AuthSettings",
    "DataSettings",
    "GateThresholds",
    "GuardSettings",
    "GuardSignatureSettings",
    "OtelSettings",
    "RolloutSettings",
    "ServeSettings",
    "TelemetrySettings",
]


class TelemetrySettings(Section):
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


class GateThresholds(Section):
    """Quality-gate thresholds of one signature (seed 001's table supplies defaults for its signatures)."""

    min_quality: float = Field(70.0, ge=0, le=100, description="every example's quality score at least this")
    difficulty_targets: dict[str, float] = Field(default_factory=lambda: {"easy": 0.3, "medium": 0.5, "hard": 0.2})
    difficulty_tolerance: float = Field(0.10, ge=0, le=1, description="allowed distance from each target share")
    completeness_targets: dict[str, float] | None = Field(
        None, description="share of complete/incomplete examples, e.g. {complete = 0.4, incomplete = 0.6}")
    min_categories: int = Field(3, ge=1)
    max_source_share: float = Field(0.80, gt=0, le=1, description="no single source above this share")


class DataSettings(Section):
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


class RolloutSettings(Section):
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


class ServeSettings(Section):
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


class AuthSettings(Section):
    """API keys on the HTTP API (``ratchet keys``)."""

    mode: Literal["auto", "required", "off"] = Field(
        "auto", description="auto: keys required when serve.host is not a loopback address; required: always; "
                            "off: never (logged and audited at start when the server is reachable from other hosts)")
    cache_seconds: float = Field(5.0, ge=0, le=300, description="a key's database row is re-read after this long, so "
                                                                "a revoked key stops working within it")
    max_key_age_days: float = Field(90.0, gt=0, description="the keys check warns about keys older than this")
    max_unused_days: float = Field(30.0, gt=0, description="the keys check warns about keys unused this long")


class OtelSettings(Section):
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


class GuardSignatureSettings(Section):
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
