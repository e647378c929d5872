"""The drift check's results for Prometheus and the dashboard: a textfile and a JSON snapshot under ``<home>/metrics``.

Checks run in their own short-lived process (cron, ``ratchet schedule``), so there is no live
registry to scrape. Each run that dispatches writes, atomically:

- ``metrics/ratchet_drift.prom``: the gauges below in Prometheus' text format — the file format
  of node-exporter's textfile collector, and ``ratchet serve`` adds every ``*.prom`` of that
  directory to its ``/metrics`` (:class:`ratchet.serve.metrics.TextfileCollector`);
- ``metrics/drift.json``: the whole report (no inputs or outputs; owner-only), which the dashboard shows.

A signature without a verdict of some kind has no sample for it (Prometheus shows no data, not 0).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ratchet.monitor.drift.assess import DriftReport
from ratchet.store.atomic import atomic_write_bytes, atomic_write_json
from ratchet.store.private import SHARED_FILE

__all__ = ["FAMILIES", "METRICS_DIRNAME", "SNAPSHOT_FILENAME", "TEXTFILE_NAME", "read_snapshot", "render_metrics",
           "write_results"]

METRICS_DIRNAME = "metrics"
TEXTFILE_NAME = "ratchet_drift.prom"
SNAPSHOT_FILENAME = "drift.json"

FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ratchet_drift_output_psi": (
        "PSI of the live output labels against the production version's training labels.", ("signature",)),
    "ratchet_drift_input_novel_share": (
        "Share of live inputs whose best similarity to any training input is below the threshold.", ("signature",)),
    "ratchet_drift_input_novel_share_reference": (
        "The same share among held-out reference inputs: what is normal for this data.", ("signature",)),
    "ratchet_drift_samples": (
        "Live calls compared: successful, production (baseline) arm, in the window.", ("signature",)),
    "ratchet_drift_flagged": (
        "1 when drift of this kind was found, 0 when judged and not found.", ("signature", "kind")),
    "ratchet_drift_last_check_timestamp_seconds": ("When the drift check last ran (Unix time).", ()),
}
"""Metric name → (help, labels): every family the textfile holds."""


def render_metrics(report: DriftReport) -> bytes:
    """The report's gauges in Prometheus' text exposition format."""
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, labels, registry=registry) for name, (text, labels) in FAMILIES.items()}
    gauges["ratchet_drift_last_check_timestamp_seconds"].set(report.checked_at)
    for name, sig in report.signatures.items():
        gauges["ratchet_drift_samples"].labels(name).set(sig.live_n)
        if sig.output is not None:
            gauges["ratchet_drift_output_psi"].labels(name).set(sig.output.psi)
        if sig.input is not None:
            gauges["ratchet_drift_input_novel_share"].labels(name).set(sig.input.live_share)
            gauges["ratchet_drift_input_novel_share_reference"].labels(name).set(sig.input.reference_share)
        for kind in sig.judged:
            gauges["ratchet_drift_flagged"].labels(name, kind).set(1 if kind in sig.flagged else 0)
    return generate_latest(registry)


def write_results(home: Path, report: DriftReport) -> Path:
    """Write the textfile and the snapshot under ``<home>/metrics``; returns the textfile's path."""
    directory = Path(home) / METRICS_DIRNAME
    path = directory / TEXTFILE_NAME
    atomic_write_bytes(path, render_metrics(report), mode=SHARED_FILE)  # numbers only: node-exporter may read it
    atomic_write_json(directory / SNAPSHOT_FILENAME, report.to_dict())
    return path


def read_snapshot(home: Path) -> dict[str, Any] | None:
    """The last written report (None when there is none or it cannot be read)."""
    try:
        data = json.loads((Path(home) / METRICS_DIRNAME / SNAPSHOT_FILENAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
