"""The operations sections: ``[monitor]`` (with drift and canaries), ``[loop]`` (triggers), ``[flywheel]``,
``[schedule]``, ``[retention]`` and ``[thresholds]``."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator

from ratchet.config.section import Section

__all__ = [
    "CanarySettings",
    "DriftSettings",
    "FlywheelSettings",
    "LoopSettings",
    "MonitorSettings",
    "RetentionSettings",
    "ScheduleSettings",
    "ThresholdSettings",
    "TriggerSettings",
]


class DriftSettings(Section):
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


class CanarySettings(Section):
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


class MonitorSettings(Section):
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


class TriggerSettings(Section):
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


class FlywheelSettings(Section):
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


class ScheduleSettings(Section):
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


class RetentionSettings(Section):
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


class ThresholdSettings(Section):
    """Service-level thresholds (seed 000's alert column as defaults)."""

    latency_p50_ms: float = Field(500.0, gt=0)
    latency_p95_ms: float = Field(1000.0, gt=0)
    latency_p99_ms: float = Field(2000.0, gt=0)
    min_success_rate: float = Field(0.95, ge=0, le=1)
    max_tokens_per_request: float = Field(2000.0, gt=0)
    max_cost_per_request_usd: float = Field(0.05, ge=0)
    max_cost_per_hour_usd: float = Field(10.0, ge=0)
