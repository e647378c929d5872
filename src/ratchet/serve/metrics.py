"""Prometheus metrics of the serving path, with seed 000's names and labels.

Request metrics carry ``signature``, ``module`` (the program's DSPy module class)
and ``arm`` labels. With several worker processes, set ``PROMETHEUS_MULTIPROC_DIR``
before this module is imported (``ratchet serve --workers N`` does) and
:func:`render_latest` aggregates every worker's samples, so totals are correct.
Latency is a histogram: p95 is ``histogram_quantile(0.95, rate(...[5m]))``.

Metrics of batch jobs (the drift check runs from cron, not in a serving process) are written
as Prometheus text files, ``*.prom``, into a directory — node-exporter's textfile-collector
format; :func:`render_latest` adds them to ``/metrics`` when ``RATCHET_METRICS_TEXTFILE_DIR``
names that directory (``ratchet serve`` sets it to ``<home>/metrics``).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Collection, Iterator
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

__all__ = [
    "CONTENT_TYPE_LATEST",
    "COST",
    "DURATION",
    "ERRORS",
    "EXPERIMENT_SHARE",
    "FALLBACKS",
    "FEEDBACK",
    "INJECTION_DETECTED",
    "MODULE_VERSION",
    "RATE_LIMITED",
    "REDACTIONS",
    "REJECTED",
    "REQUESTS",
    "ROUTING_FILE_REPAIRS",
    "ROUTING_RELOAD_ERRORS",
    "ROUTING_VERSION",
    "SHADOW_CALLS",
    "SHADOW_DURATION",
    "SHADOW_SKIPPED",
    "TELEMETRY_DROPPED",
    "TELEMETRY_SAMPLED",
    "TEXTFILE_DIR_ENV",
    "TOKENS",
    "VERSION_UNAVAILABLE",
    "TextfileCollector",
    "multiprocess_dir",
    "render_latest",
    "textfile_dir",
]

log = logging.getLogger(__name__)

TEXTFILE_DIR_ENV = "RATCHET_METRICS_TEXTFILE_DIR"
_TYPE_LINE = re.compile(rb"^# TYPE (\S+) ", re.MULTILINE)

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
SHADOW_CALLS = Counter("ratchet_shadow_calls_total",
                       "Candidate calls in shadow (answers never returned), by outcome: agree, disagree (with "
                       "production's answer), error (the candidate failed), unpaired (production failed).",
                       ("signature", "version", "outcome"))
SHADOW_SKIPPED = Counter("ratchet_shadow_skipped_total",
                         "Requests chosen for shadow but not run, by reason: rate_limit "
                         "(rollout.max_shadow_calls_per_minute), queue_full, or busy (no free call slot: "
                         "serve.max_concurrent_calls).", ("signature", "reason"))
SHADOW_DURATION = Histogram("ratchet_shadow_duration_seconds", "Latency of candidate calls in shadow.",
                            ("signature",), buckets=LATENCY_BUCKETS)
INJECTION_DETECTED = Counter("ratchet_injection_detected_total",
                             "Inputs that broke an injection-guard rule, by rule (reason code) and action: block "
                             "(refused with 400) or flag (served, counted).", ("signature", "rule", "action"))
REJECTED = Counter("ratchet_rejected_requests_total",
                   "Requests refused before the program ran: because of what they hold (invalid_request, invalid_text, "
                   "field_too_long, input_too_long, injection_blocked: the client's errors) or because every call slot "
                   "was taken (overloaded); never counted as the arm's requests or failures.",
                   ("signature", "arm", "reason"))
RATE_LIMITED = Counter("ratchet_rate_limited_total",
                       "Requests refused with 429 by the per-client rate limits ([limits]), by endpoint (predict, "
                       "feedback) and API key name (anonymous: a client known by its address).", ("endpoint", "key"))
EXPERIMENT_SHARE = Gauge("ratchet_experiment_candidate_share", "Candidate traffic share in the routing state.",
                         ("signature",), multiprocess_mode="livemax")


def multiprocess_dir() -> str | None:
    """The multiprocess directory when several workers share metrics, else None."""
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR")


def textfile_dir() -> Path | None:
    """The directory of batch jobs' ``*.prom`` files to expose too, when ``RATCHET_METRICS_TEXTFILE_DIR`` names one."""
    value = os.environ.get(TEXTFILE_DIR_ENV)
    return Path(value) if value else None


class TextfileCollector:
    """The metric families of every ``*.prom`` file in a directory, read at each scrape.

    A file that cannot be read or parsed is skipped (and logged): a broken batch job must not break
    ``/metrics``. Families named in ``skip`` (this process's own) or by an earlier file are left out,
    so the exposition never declares a family twice.
    """

    def __init__(self, directory: Path, skip: Collection[str] = ()) -> None:
        self.directory = Path(directory)
        self.skip = set(skip)

    def collect(self) -> Iterator[Metric]:
        seen = set(self.skip)
        try:
            paths = sorted(self.directory.glob("*.prom"))
        except OSError:
            return
        for path in paths:
            try:
                families = list(text_string_to_metric_families(path.read_text(encoding="utf-8")))
            except (OSError, ValueError) as exc:
                log.warning("metrics textfile %s skipped: %s", path, exc)
                continue
            for family in families:
                if family.name not in seen:
                    seen.add(family.name)
                    yield family


def render_latest(textfiles: Path | None = None) -> bytes:
    """The exposition text: this process's registry (every worker's in multiprocess mode), then the textfiles'
    families (``textfiles``, default :func:`textfile_dir`)."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        body = generate_latest(registry)
    else:
        body = generate_latest()
    directory = textfiles or textfile_dir()
    if directory is None or not directory.is_dir():
        return body
    extra = CollectorRegistry(auto_describe=False)
    extra.register(TextfileCollector(directory, skip={m.decode() for m in _TYPE_LINE.findall(body)}))
    return body + generate_latest(extra)
