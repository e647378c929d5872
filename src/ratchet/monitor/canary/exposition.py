"""Canary results for Prometheus: ``<home>/metrics/ratchet_canary.prom``.

Canaries run in batch processes (the controller, ``ratchet canary run``), so — like the drift
check's — their gauges go to a textfile that ``ratchet serve`` adds to ``/metrics``
(:class:`ratchet.serve.metrics.TextfileCollector`; node-exporter's textfile collector reads it
too). The file is rendered from the state database after every pass that ran, for the versions
that matter now (production and both arms of every live experiment), so a version that left
production or whose experiment ended drops out of it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge, generate_latest

from ratchet.monitor.canary.degradation import Degradation
from ratchet.monitor.drift.exposition import METRICS_DIRNAME
from ratchet.store.atomic import atomic_write_bytes
from ratchet.store.canaries import CanaryRun
from ratchet.store.private import SHARED_FILE

__all__ = ["FAMILIES", "TEXTFILE_NAME", "SignatureSnapshot", "render_metrics", "write_metrics"]

TEXTFILE_NAME = "ratchet_canary.prom"

FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "ratchet_canary_score": (
        "Mean metric (0-1) of the version's newest canary run on the signature's fixed probes.",
        ("signature", "version")),
    "ratchet_canary_probes": ("Probes scored in that run.", ("signature", "version")),
    "ratchet_canary_errors": (
        "Probes of that run whose call failed or whose answer could not be parsed (each scores 0).",
        ("signature", "version")),
    "ratchet_canary_run_timestamp_seconds": ("When that run finished (Unix time).", ("signature", "version")),
    "ratchet_canary_production_trailing_score": (
        "Production's trailing canary baseline: its previous runs' per-probe means, averaged.", ("signature",)),
    "ratchet_canary_degraded": (
        "1 when production's newest canary run dropped against its trailing runs, 0 when judged and not.",
        ("signature",)),
    "ratchet_canary_last_run_timestamp_seconds": ("When a canary run last finished (Unix time).", ()),
}
"""Metric name → (help, labels): every family the textfile holds."""


@dataclass
class SignatureSnapshot:
    """What the textfile shows of one signature: the newest run of each current version, production's verdict."""

    signature: str
    runs: dict[str, CanaryRun] = field(default_factory=dict)  # version → newest run
    degradation: Degradation | None = None


def render_metrics(snapshots: Sequence[SignatureSnapshot]) -> bytes:
    """The gauges in Prometheus' text exposition format (a signature or version never scored has no sample)."""
    registry = CollectorRegistry()
    gauges = {name: Gauge(name, text, labels, registry=registry) for name, (text, labels) in FAMILIES.items()}
    newest = 0.0
    for snap in snapshots:
        for version, run in snap.runs.items():
            gauges["ratchet_canary_score"].labels(snap.signature, version).set(run.score)
            gauges["ratchet_canary_probes"].labels(snap.signature, version).set(run.n)
            gauges["ratchet_canary_errors"].labels(snap.signature, version).set(run.errors + run.parse_failures)
            gauges["ratchet_canary_run_timestamp_seconds"].labels(snap.signature, version).set(run.at)
            newest = max(newest, run.at)
        verdict = snap.degradation
        if verdict is not None and verdict.judged:
            gauges["ratchet_canary_degraded"].labels(snap.signature).set(1 if verdict.degraded else 0)
            if verdict.baseline_score is not None:
                gauges["ratchet_canary_production_trailing_score"].labels(snap.signature).set(verdict.baseline_score)
    if newest:
        gauges["ratchet_canary_last_run_timestamp_seconds"].set(newest)
    return generate_latest(registry)


def write_metrics(home: Path, snapshots: Sequence[SignatureSnapshot]) -> Path:
    """Write ``<home>/metrics/ratchet_canary.prom`` atomically; returns its path."""
    path = Path(home) / METRICS_DIRNAME / TEXTFILE_NAME
    atomic_write_bytes(path, render_metrics(snapshots), mode=SHARED_FILE)  # numbers only: node-exporter may read it
    return path
