"""Prometheus metrics of the serving path, with seed 000's names and labels.

Request metrics carry ``signature``, ``module`` (the program's DSPy module class)
and ``arm`` labels. With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR``
before this module is imported (``ratchet serve --workers N`` does) and
:func:`render_latest` aggregates every worker's samples, so totals are correct.
Latency is a histogram: p95 is ``histogram_quantile(0.95, rate(...[5m]))``.
"""

from __future__ import annotations

import os

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = [
    "CONTENT_TYPE_LATEST",
    "COST",
    "DURATION",
    "ERRORS",
    "EXPERIMENT_SHARE",
    "FALLBACKS",
    "FEEDBACK",
    "MODULE_VERSION",
    "REDACTIONS",
    "REQUESTS",
    "ROUTING_FILE_REPAIRS",
    "ROUTING_RELOAD_ERRORS",
    "ROUTING_VERSION",
    "TELEMETRY_DROPPED",
    "TELEMETRY_SAMPLED",
    "TOKENS",
    "VERSION_UNAVAILABLE",
    "multiprocess_dir",
    "render_latest",
]

_REQUEST_LABELS = ("signature", "module", "arm")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)

REQUESTS = Counter("dspy_requests_total", "Program requests served.", _REQUEST_LABELS)
DURATION = Histogram("dspy_request_duration_seconds", "Request latency, end to end through the program.",
                     _REQUEST_LABELS, buckets=LATENCY_BUCKETS)
ERRORS = Counter("dspy_request_errors_total", "Failed requests by error type.", (*_REQUEST_LABELS, "error_type"))
TOKENS = Counter("dspy_tokens_total", "LM tokens by type (input, output).", (*_REQUEST_LABELS, "type"))
COST = Counter("dspy_cost_usd_total", "Estimated LM cost in USD (known prices only).", _REQUEST_LABELS)
MODULE_VERSION = Gauge("dspy_module_version", "1 for each program version a process serves.",
                       ("signature", "module", "arm", "version"), multiprocess_mode="livemax")
FALLBACKS = Counter("ratchet_lm_fallback_total", "Requests answered by the fallback LM.", ("signature",))
FEEDBACK = Counter("ratchet_feedback_total", "Feedback scores received.", ("signature", "arm"))
TELEMETRY_SAMPLED = Counter("ratchet_telemetry_sampled_total", "Requests sampled into telemetry.", ("signature",))
TELEMETRY_DROPPED = Counter("ratchet_telemetry_dropped_total", "Telemetry records dropped (buffer full).")
REDACTIONS = Counter("ratchet_telemetry_redactions_total", "PII redactions before telemetry, by kind.", ("kind",))
ROUTING_RELOAD_ERRORS = Counter("ratchet_routing_reload_errors_total",
                                "Failed reads of the routing state from the state database (the last verified kept).")
ROUTING_FILE_REPAIRS = Counter("ratchet_routing_file_repairs_total",
                               "routing_config.json rewritten because it did not match the state database, by what "
                               "was found: invalid (edited: no or wrong checksum) or stale.", ("found",))
VERSION_UNAVAILABLE = Counter("ratchet_version_unavailable_total",
                              "Requests whose program version could not be loaded (missing or damaged files).",
                              ("signature", "version", "arm"))
ROUTING_VERSION = Gauge("ratchet_routing_version", "Version of the routing state a process uses.",
                        multiprocess_mode="livemin")
EXPERIMENT_SHARE = Gauge("ratchet_experiment_candidate_share", "Candidate traffic share in the routing state.",
                         ("signature",), multiprocess_mode="livemax")


def multiprocess_dir() -> str | None:
    """The multiprocess directory when several workers share metrics, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def render_latest() -> bytes:
    """The exposition text: this process's registry, or every worker's when in multiprocess mode."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()
