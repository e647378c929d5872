"""The eval regression's gauges for Prometheus: ``<home>/metrics/ratchet_golden.prom``.

``ratchet eval-regression`` runs in a short-lived process (the daily job), so — like the canary and
annotation gauges — its results go to a textfile that ``ratchet serve`` adds to ``/metrics``
(:class:`ratchet.serve.metrics.TextfileCollector`; node-exporter's textfile collector reads it too). The file
is rendered from each signature's newest eval report (:mod:`ratchet.flywheel.regression`), so a version that
left production or whose experiment ended drops out at the next run.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ratchet.monitor.drift.exposition import METRICS_DIRNAME
from ratchet.store.atomic import atomic_write_bytes
from ratchet.store.private import SHARED_FILE

__all__ = ["FAMILIES", "TEXTFILE_NAME", "render_metrics", "write_metrics"]

TEXTFILE_NAME = "ratchet_golden.prom"

FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ratchet_golden_score": (
        "Mean metric (0-1) of the version on its signature's latest golden set, in the newest eval-regression run.",
        ("signature", "version")),
    "ratchet_golden_regression": (
        "1 when the newest eval-regression run found the version significantly worse than its reference "
        "(the previous run's scores on the same golden examples), 0 when compared and not.",
        ("signature", "version")),
    "ratchet_eval_regression_last_run_timestamp_seconds": (
        "When the newest eval-regression run of the signature finished (Unix time).", ("signature",)),
}
"""Metric name → (help, labels): every family the textfile holds."""


def render_metrics(reports: Mapping[str, Mapping[str, Any]]) -> bytes:
    """The gauges of each signature's newest report (signature → report) in Prometheus' text format."""
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, labels, registry=registry) for name, (text, labels) in FAMILIES.items()}
    for signature, report in reports.items():
        for version in report.get("versions") or []:
            if version.get("score") is None:
                continue
            gauges["ratchet_golden_score"].labels(signature, version["version"]).set(version["score"])
            if version.get("comparison") is not None:
                gauges["ratchet_golden_regression"].labels(signature, version["version"]).set(
                    1 if version.get("regression") else 0)
        try:
            at = datetime.fromisoformat(str(report.get("run_at"))).timestamp()
        except ValueError:
            continue
        gauges["ratchet_eval_regression_last_run_timestamp_seconds"].labels(signature).set(at)
    return generate_latest(registry)


def write_metrics(home: Path, reports: Mapping[str, Mapping[str, Any]]) -> Path:
    """Write ``<home>/metrics/ratchet_golden.prom`` atomically; returns its path."""
    path = Path(home) / METRICS_DIRNAME / TEXTFILE_NAME
    atomic_write_bytes(path, render_metrics(reports), mode=SHARED_FILE)
    return path
