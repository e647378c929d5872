"""The flywheel's gauges for Prometheus: ``<home>/metrics/ratchet_annotation.prom``.

The annotation check runs in a short-lived process, so — like the drift check — it writes its
gauges to a textfile that ``ratchet serve`` adds to ``/metrics``
(:class:`ratchet.serve.metrics.TextfileCollector`; node-exporter's textfile collector reads it too):
the annotation backlog per signature and state, the age of each signature's oldest waiting task,
and the share of the last day's served requests that received feedback.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest
from sqlalchemy import func, select

from ratchet.annotate import Backlog
from ratchet.monitor.drift.exposition import METRICS_DIRNAME
from ratchet.store.atomic import atomic_write_bytes
from ratchet.store.db import StateDB
from ratchet.store.private import SHARED_FILE
from ratchet.store.tables import feedback, request_index

__all__ = ["FAMILIES", "FEEDBACK_WINDOW_S", "TEXTFILE_NAME", "FeedbackRate", "feedback_rates", "render_metrics",
           "write_metrics"]

TEXTFILE_NAME = "ratchet_annotation.prom"
FEEDBACK_WINDOW_S = 86400.0

FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ratchet_annotation_backlog": (
        "Annotation tasks waiting, by state: open (including expired leases) or leased to an annotator.",
        ("signature", "state")),
    "ratchet_annotation_backlog_oldest_seconds": (
        "Age of the signature's oldest annotation task still waiting (open or leased).", ("signature",)),
    "ratchet_feedback_rate": (
        "Share of the requests served in the last 24 h that received feedback.", ("signature",)),
    "ratchet_annotation_last_check_timestamp_seconds": ("When the annotation check last ran (Unix time).", ()),
}
"""Metric name → (help, labels): every family the textfile holds."""


@dataclass(frozen=True)
class FeedbackRate:
    """One signature's requests served in the window and how many of them received feedback."""

    signature: str
    requests: int
    with_feedback: int

    @property
    def rate(self) -> float:
        return self.with_feedback / self.requests if self.requests else 0.0


def feedback_rates(db: StateDB, *, now: float | None = None,
                   window_s: float = FEEDBACK_WINDOW_S) -> list[FeedbackRate]:
    """Per signature with requests in the window: requests served and those with feedback (request index ⟕ feedback)."""
    now = time.time() if now is None else now
    ri, fb = request_index.c, feedback.c
    query = (select(ri.signature, func.count(ri.request_id), func.count(fb.request_id))
             .select_from(request_index.outerjoin(feedback, fb.request_id == ri.request_id))
             .where(ri.created_at >= now - window_s, ri.created_at <= now)
             .group_by(ri.signature).order_by(ri.signature))
    with db.begin(snapshot=True) as conn:
        return [FeedbackRate(sig, int(n), int(k)) for sig, n, k in conn.execute(query)]


def render_metrics(backlog: Sequence[Backlog], rates: Sequence[FeedbackRate], *, checked_at: float) -> bytes:
    """The gauges in Prometheus' text exposition format (a signature without waiting tasks has no age sample)."""
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, labels, registry=registry) for name, (text, labels) in FAMILIES.items()}
    gauges["ratchet_annotation_last_check_timestamp_seconds"].set(checked_at)
    for item in backlog:
        gauges["ratchet_annotation_backlog"].labels(item.signature, "open").set(item.open)
        gauges["ratchet_annotation_backlog"].labels(item.signature, "leased").set(item.leased)
        if item.oldest_age_s is not None:
            gauges["ratchet_annotation_backlog_oldest_seconds"].labels(item.signature).set(item.oldest_age_s)
    for rate in rates:
        gauges["ratchet_feedback_rate"].labels(rate.signature).set(rate.rate)
    return generate_latest(registry)


def write_metrics(home: Path, backlog: Sequence[Backlog], rates: Sequence[FeedbackRate], *,
                  checked_at: float) -> Path:
    """Write ``<home>/metrics/ratchet_annotation.prom`` atomically; returns its path."""
    path = Path(home) / METRICS_DIRNAME / TEXTFILE_NAME
    atomic_write_bytes(path, render_metrics(backlog, rates, checked_at=checked_at), mode=SHARED_FILE)
    return path
