"""How a golden set looks (:func:`golden_stats`) and how well it covers live traffic (:func:`golden_coverage`).

Labels are the values of a signature's ``Literal`` output fields, plus the example's
category when the program names one (``category=``) or has no ``Literal`` output. Traffic
is the sampled telemetry under ``<home>/telemetry``: successful calls of the signature in
the window, the served arms only (a shadow answer was never served), each counted by its
*predicted* label. A label is under-represented when its share of traffic exceeds its
share of golden; ``shortfall`` is how many more golden examples of it a set of
``max(size, min_size)`` examples would hold if it mirrored traffic. Gaps are ranked by
the difference of shares: plan annotation from the top.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.data.golden.store import GoldenExample, GoldenStore
from ratchet.programs.registry import ProgramSpec
from ratchet.store.jsonl import JsonlReadStats, iter_jsonl
from ratchet.telemetry.records import InteractionLog, parse_record
from ratchet.telemetry.writer import iter_log_files

__all__ = ["CATEGORY", "GoldenCoverage", "LabelCoverage", "TrafficScan", "golden_coverage", "golden_stats",
           "label_dimensions", "read_traffic"]

CATEGORY = "category"


def label_dimensions(spec: ProgramSpec) -> dict[str, tuple[str, ...]]:
    """Output field → its ``Literal`` choices, plus ``category`` (no fixed choices) when it says something more."""
    dims = {f.name: f.choices for f in spec.schema.outputs if f.choices}
    if spec.category_fn is not None or not dims:
        dims[CATEGORY] = ()
    return dims


def _labels(spec: ProgramSpec, dims: dict[str, tuple[str, ...]], values: dict[str, Any],
            category: str | None = None) -> dict[str, str]:
    out = {}
    for name, choices in dims.items():
        if name == CATEGORY:
            if category is None:
                with contextlib.suppress(Exception):  # a user's category function must not stop the report
                    category = spec.category(values)
            if category is not None:
                out[name] = str(category)
        elif isinstance(values.get(name), str) and values[name] in choices:
            out[name] = values[name]
    return out


def golden_stats(store: GoldenStore, spec: ProgramSpec) -> dict[str, Any]:
    """Size, versions, sources, annotators and the label distribution of each dimension of the latest set."""
    infos = store.list_versions(spec.name)
    examples = store.examples(spec.name)
    dims = label_dimensions(spec)
    counts: dict[str, Counter[str]] = {name: Counter(dict.fromkeys(choices, 0)) for name, choices in dims.items()}
    for example in examples:
        for name, label in _labels(spec, dims, example.values, example.category).items():
            counts[name][label] += 1
    latest = next((i for i in infos if i.latest), None)
    return {
        "signature": spec.name, "size": len(examples), "versions": len(infos),
        "latest": latest.version if latest else None, "created": latest.metadata.get("created") if latest else None,
        "sources": dict(sorted(Counter(e.source for e in examples).items())),
        "annotators": dict(sorted(Counter(e.annotator for e in examples if e.annotator).items())),
        "labels": {name: dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))) for name, c in counts.items()},
    }


@dataclass
class TrafficScan:
    """What reading telemetry saw: files, lines, calls counted and calls left out (by reason)."""

    files: int = 0
    calls: int = 0
    read: JsonlReadStats = field(default_factory=JsonlReadStats)
    invalid_records: int = 0
    excluded: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "lines": self.read.lines, "malformed_lines": self.read.bad_lines,
                "invalid_records": self.invalid_records, "calls": self.calls,
                "excluded": dict(sorted(self.excluded.items()))}


def read_traffic(directory: Path, signature: str, *, since_ms: int) -> tuple[list[InteractionLog], TrafficScan]:
    """The signature's served, successful calls since ``since_ms`` in the telemetry ``directory`` (missing: none)."""
    scan = TrafficScan()
    calls: list[InteractionLog] = []
    for path in iter_log_files(directory) if directory.is_dir() else []:
        try:
            if path.stat().st_mtime * 1000 < since_ms:
                continue  # a rotated file last written before the window holds only older calls
        except OSError:
            continue
        scan.files += 1
        for data in iter_jsonl(path, scan.read):
            if data.get("record") == "feedback" or data.get("signature") != signature:
                continue
            try:
                record = parse_record(data)
            except ValueError:
                scan.invalid_records += 1
                continue
            assert isinstance(record, InteractionLog)
            reason = ("before_window" if record.timestamp_ms < since_ms else "failed_call" if not record.success
                      else "shadow_arm" if record.arm == "shadow" else None)
            if reason:
                scan.excluded[reason] += 1
                continue
            calls.append(record)
    scan.calls = len(calls)
    return calls, scan


@dataclass(frozen=True)
class LabelCoverage:
    """One label of one dimension: its count and share in traffic and in golden."""

    dimension: str
    label: str
    traffic: int
    traffic_share: float
    golden: int
    golden_share: float
    shortfall: int

    @property
    def gap(self) -> float:
        """Traffic share minus golden share: positive when golden under-represents the label."""
        return self.traffic_share - self.golden_share

    def to_dict(self) -> dict[str, Any]:
        return {"dimension": self.dimension, "label": self.label, "traffic": self.traffic,
                "traffic_share": round(self.traffic_share, 4), "golden": self.golden,
                "golden_share": round(self.golden_share, 4), "gap": round(self.gap, 4), "shortfall": self.shortfall}


@dataclass
class GoldenCoverage:
    """A signature's golden set against its live traffic, label by label."""

    signature: str
    golden_version: str | None
    golden_size: int
    traffic_calls: int
    since_days: float
    target_size: int
    labels: list[LabelCoverage]
    scan: TrafficScan

    @property
    def gaps(self) -> list[LabelCoverage]:
        """Labels seen in traffic and under-represented in golden, the largest gap first."""
        return sorted((c for c in self.labels if c.traffic and c.gap > 0), key=lambda c: (-c.gap, c.label))

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "golden_version": self.golden_version, "golden_size": self.golden_size,
                "traffic_calls": self.traffic_calls, "since_days": self.since_days, "target_size": self.target_size,
                "gaps": [c.to_dict() for c in self.gaps], "labels": [c.to_dict() for c in self.labels],
                "telemetry": self.scan.to_dict()}


def golden_coverage(store: GoldenStore, spec: ProgramSpec, telemetry_dir: Path, *, since_days: float = 7.0,
                    min_size: int = 100, now_ms: int | None = None) -> GoldenCoverage:
    """Compare the latest golden set's labels with the labels predicted in the last ``since_days`` of traffic."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    calls, scan = read_traffic(Path(telemetry_dir), spec.name, since_ms=now_ms - int(since_days * 86_400_000))
    golden: list[GoldenExample] = store.examples(spec.name)
    dims = label_dimensions(spec)
    traffic_counts: dict[str, Counter[str]] = {name: Counter() for name in dims}
    golden_counts: dict[str, Counter[str]] = {name: Counter() for name in dims}
    for call in calls:
        for name, label in _labels(spec, dims, {**call.input, **call.output}).items():
            traffic_counts[name][label] += 1
    for example in golden:
        for name, label in _labels(spec, dims, example.values, example.category).items():
            golden_counts[name][label] += 1
    target = max(len(golden), min_size)
    rows = []
    for name in dims:
        t_total, g_total = sum(traffic_counts[name].values()), sum(golden_counts[name].values())
        for label in sorted(set(traffic_counts[name]) | set(golden_counts[name])):
            t, g = traffic_counts[name][label], golden_counts[name][label]
            t_share, g_share = (t / t_total if t_total else 0.0), (g / g_total if g_total else 0.0)
            rows.append(LabelCoverage(name, label, t, t_share, g, g_share, max(0, round(t_share * target) - g)))
    latest = store.latest_version(spec.name)
    return GoldenCoverage(spec.name, latest, len(golden), len(calls), since_days, target, rows, scan)
