"""Live service levels from the per-arm counters (seed 000's alert thresholds).

Success rate, p50/p95/p99 latency, tokens and cost per request, and cost per hour, each
against its ``[thresholds]`` setting.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ratchet.config import Settings, ThresholdSettings
from ratchet.monitor.alerts import Alert
from ratchet.monitor.results import CheckResult
from ratchet.store.db import StateDB
from ratchet.store.outcomes import ArmStats, latency_quantile, read_totals

__all__ = ["ALL", "CRITICAL_SUCCESS_RATE", "MIN_REQUESTS", "NAME", "ServiceLevel", "check_slo", "service_levels"]

NAME = "slo"
ALL = "all"
MIN_REQUESTS = 10
"""Success-rate and latency alerts need this many requests in the window (one failed call is not an outage)."""
CRITICAL_SUCCESS_RATE = 0.50
"""Below this the service is down: critical (seed 000's P0, "> 50 % error rate")."""


@dataclass(frozen=True)
class ServiceLevel:
    """One signature's traffic over the window: all versions and arms together, or one arm."""

    signature: str
    arm: str
    window_minutes: float
    requests: int
    errors: int
    errors_by_type: dict[str, int]
    latency_p50_ms: float
    latency_p95_ms: float
    latency_p99_ms: float
    cost_usd: float
    tokens: int = 0  # input and output tokens together

    @property
    def success_rate(self) -> float:
        return 1.0 - self.errors / self.requests if self.requests else 0.0

    @property
    def answered(self) -> int:
        """Requests that succeeded: only they report token usage and cost."""
        return self.requests - self.errors

    @property
    def tokens_per_request(self) -> float:
        """Mean tokens of an answered request (failed requests report none, so they would only dilute it)."""
        return self.tokens / self.answered if self.answered else 0.0

    @property
    def cost_per_request_usd(self) -> float:
        """Mean cost of an answered request."""
        return self.cost_usd / self.answered if self.answered else 0.0

    @property
    def cost_per_hour_usd(self) -> float:
        return self.cost_usd / (self.window_minutes / 60)

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "errors": self.errors, "success_rate": round(self.success_rate, 4),
                "latency_p50_ms": round(self.latency_p50_ms, 1), "latency_p95_ms": round(self.latency_p95_ms, 1),
                "latency_p99_ms": round(self.latency_p99_ms, 1), "cost_usd": round(self.cost_usd, 6),
                "cost_per_hour_usd": round(self.cost_per_hour_usd, 4), "tokens": self.tokens,
                "tokens_per_request": round(self.tokens_per_request, 1),
                "cost_per_request_usd": round(self.cost_per_request_usd, 6), "errors_by_type": self.errors_by_type}


def service_levels(db: StateDB, window_minutes: float, *, now: float | None = None
                   ) -> dict[str, dict[str, ServiceLevel]]:
    """Signature → {"all": …, arm: …} over the last ``window_minutes`` (counters have one-minute resolution)."""
    now = time.time() if now is None else now
    totals = read_totals(db, since=now - window_minutes * 60)
    grouped: dict[str, dict[str, list[ArmStats]]] = {}
    for (signature, _version, arm), stats in totals.items():
        if stats.requests:
            arms = grouped.setdefault(signature, {})
            arms.setdefault(ALL, []).append(stats)
            arms.setdefault(arm, []).append(stats)
    return {signature: {scope: _merge(signature, scope, window_minutes, parts) for scope, parts in arms.items()}
            for signature, arms in sorted(grouped.items())}


def check_slo(settings: Settings, *, db: StateDB | None = None, now: float | None = None) -> CheckResult:
    """Per signature over ``slo_window_minutes`` (all arms together, and each arm while an experiment splits it):

    * success rate below ``thresholds.min_success_rate`` → error (critical below 50 %);
    * p50, p95 and p99 latency above ``thresholds.latency_p50_ms``/``latency_p95_ms``/``latency_p99_ms``
      → warning, one alert per quantile;
    * mean tokens per answered request above ``thresholds.max_tokens_per_request`` → warning;
    * mean cost per answered request above ``thresholds.max_cost_per_request_usd`` (0 disables) → warning;
    * cost per hour above ``thresholds.max_cost_per_hour_usd`` (all arms; 0 disables) → warning.

    Rates, latencies and per-request means need ``MIN_REQUESTS`` requests (answered ones for the
    means). No traffic in the window raises nothing.
    """
    db = db or StateDB.connect(settings)
    window = settings.monitor.slo_window_minutes
    levels = service_levels(db, window, now=now)
    result = CheckResult(NAME, scopes=[NAME])
    result.summary = {"window_minutes": window,
                      "signatures": {sig: {scope: level.to_dict() for scope, level in arms.items()}
                                     for sig, arms in levels.items()}}
    for arms in levels.values():
        scopes = [ALL] + (sorted(s for s in arms if s != ALL) if len(arms) > 2 else [])
        for scope in scopes:
            result.alerts.extend(_level_alerts(arms[scope], settings.thresholds, window))
    return result


def _level_alerts(level: ServiceLevel, thresholds: ThresholdSettings, window: float) -> list[Alert]:
    """The alerts one signature's (or one arm's) service level raises against ``thresholds``."""
    signature, scope = level.signature, level.arm
    alerts: list[Alert] = []
    where = signature if scope == ALL else f"{signature} ({scope} arm)"
    subject: dict[str, Any] = {"signature": signature}
    if scope != ALL:
        subject["arm"] = scope
    base = f"{NAME}/{{}}/{signature}/{scope}"
    if level.requests >= MIN_REQUESTS and level.success_rate < thresholds.min_success_rate:
        severity = "critical" if level.success_rate < CRITICAL_SUCCESS_RATE else "error"
        alerts.append(Alert(
            severity, "Low Success Rate",
            f"{where}: success rate {level.success_rate:.1%} over the last {window:g} min "
            f"(threshold {thresholds.min_success_rate:.0%})",
            {**subject, "success_rate": round(level.success_rate, 4), "requests": level.requests,
             "errors": level.errors, "errors_by_type": dict(list(level.errors_by_type.items())[:5]),
             "threshold": thresholds.min_success_rate, "window_minutes": window},
            condition=base.format("success_rate")))
    if level.requests >= MIN_REQUESTS:
        latencies = (("p50", "High p50 Latency", level.latency_p50_ms, thresholds.latency_p50_ms),
                     ("p95", "High Latency", level.latency_p95_ms, thresholds.latency_p95_ms),
                     ("p99", "High p99 Latency", level.latency_p99_ms, thresholds.latency_p99_ms))
        for quantile, title, latency_ms, limit_ms in latencies:
            if latency_ms > limit_ms:
                alerts.append(Alert(
                    "warning", title,
                    f"{where}: {quantile} latency {latency_ms:.0f} ms over the last {window:g} min "
                    f"(threshold {limit_ms:g} ms)",
                    {**subject, f"latency_{quantile}_ms": round(latency_ms, 1), "requests": level.requests,
                     "threshold_ms": limit_ms, "window_minutes": window},
                    condition=base.format(f"latency_{quantile}")))
    if level.answered >= MIN_REQUESTS and level.tokens_per_request > thresholds.max_tokens_per_request:
        alerts.append(Alert(
            "warning", "High Token Usage",
            f"{where}: {level.tokens_per_request:.0f} tokens per request over the last {window:g} min "
            f"(threshold {thresholds.max_tokens_per_request:g})",
            {**subject, "tokens_per_request": round(level.tokens_per_request, 1), "tokens": level.tokens,
             "requests": level.answered, "threshold_tokens": thresholds.max_tokens_per_request,
             "window_minutes": window},
            condition=base.format("tokens_per_request")))
    limit = thresholds.max_cost_per_request_usd
    if level.answered >= MIN_REQUESTS and limit > 0 and level.cost_per_request_usd > limit:
        alerts.append(Alert(
            "warning", "High Cost per Request",
            f"{where}: ${level.cost_per_request_usd:.4f} per request over the last {window:g} min "
            f"(threshold ${limit:g}/request)",
            {**subject, "cost_per_request_usd": round(level.cost_per_request_usd, 6),
             "cost_usd": round(level.cost_usd, 6), "requests": level.answered, "threshold_usd": limit,
             "window_minutes": window},
            condition=base.format("cost_per_request")))
    limit = thresholds.max_cost_per_hour_usd
    if scope == ALL and limit > 0 and level.cost_per_hour_usd > limit:
        alerts.append(Alert(
            "warning", "High Cost",
            f"{where}: ${level.cost_per_hour_usd:.2f} per hour over the last {window:g} min "
            f"(threshold ${limit:g}/hour)",
            {**subject, "cost_per_hour_usd": round(level.cost_per_hour_usd, 4),
             "cost_usd": round(level.cost_usd, 6), "requests": level.requests, "threshold_usd": limit,
             "window_minutes": window},
            condition=base.format("cost_per_hour")))
    return alerts


def _merge(signature: str, scope: str, window_minutes: float, parts: Iterable[ArmStats]) -> ServiceLevel:
    requests = errors = tokens = 0
    cost = 0.0
    errors_by_type: dict[str, int] = {}
    buckets: dict[int, int] = {}
    for stats in parts:
        requests += stats.requests
        errors += stats.errors
        cost += stats.cost_usd
        tokens += stats.tokens_in + stats.tokens_out
        for kind, count in stats.errors_by_type.items():
            errors_by_type[kind] = errors_by_type.get(kind, 0) + count
        for bucket, count in stats.latency_buckets.items():
            buckets[bucket] = buckets.get(bucket, 0) + count
    return ServiceLevel(
        signature=signature, arm=scope, window_minutes=window_minutes, requests=requests, errors=errors,
        errors_by_type=dict(sorted(errors_by_type.items(), key=lambda item: (-item[1], item[0]))),
        latency_p50_ms=latency_quantile(buckets, 0.50) * 1000, latency_p95_ms=latency_quantile(buckets, 0.95) * 1000,
        latency_p99_ms=latency_quantile(buckets, 0.99) * 1000, cost_usd=cost, tokens=tokens)
