"""Phase 1 of the weekly flywheel: triage the week's failures into named clusters and write the report.

The report (``<home>/reports/triage_<week>.json``, format ``ratchet.triage/1``) is what annotation tasks are
made from: per signature, clusters ordered by priority (size, doubled for a cluster new this week), each with
its member requests representatives-first. Clusters are matched to last week's report to mark them new or
recurring, and the failure-type distribution is compared with last week's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ratchet.errors import DataError
from ratchet.flywheel.cluster import DEFAULT_DISTANCE, Clustering, cluster_texts
from ratchet.flywheel.collect import Failure, WeekFailures, collect_failures, failure_types, input_text
from ratchet.flywheel.week import IsoWeek
from ratchet.store.atomic import atomic_write_json, atomic_write_text
from ratchet.store.db import StateDB

__all__ = ["FORMAT", "TriageOptions", "build_report", "forget_requests", "load_report", "report_paths", "run_triage",
           "write_report"]

FORMAT = "ratchet.triage/1"
REPRESENTATIVES = 3
NOVELTY_WEIGHT = 2.0  # a new cluster's priority is its size times this


@dataclass(frozen=True, slots=True)
class TriageOptions:
    """Thresholds of a triage run."""

    score_threshold: float = 0.5  # feedback under this is a failure
    canary_threshold: float | None = 0.5  # canary runs scoring under this are listed (None: not read)
    distance_threshold: float = DEFAULT_DISTANCE  # cosine distance under which clusters merge
    recurring_similarity: float = 0.5  # a cluster this similar to one of last week's is recurring
    lookback_days: float = 7.0  # feedback of the week may score calls served this long before it
    signature: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"score_threshold": self.score_threshold, "canary_threshold": self.canary_threshold,
                "distance_threshold": self.distance_threshold, "recurring_similarity": self.recurring_similarity,
                "lookback_days": self.lookback_days, "signature": self.signature}


def report_paths(reports_dir: Path, week: IsoWeek) -> tuple[Path, Path]:
    """The ``.md`` and ``.json`` report files of ``week``."""
    return reports_dir / f"triage_{week}.md", reports_dir / f"triage_{week}.json"


def load_report(reports_dir: Path, week: IsoWeek) -> dict[str, Any] | None:
    """A week's JSON report, or None when there is none; ``DataError`` when it is unreadable."""
    path = report_paths(reports_dir, week)[1]
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"last week's triage report {path} is unreadable ({exc}); move it aside to triage "
                        "without a comparison") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise DataError(f"{path} is not a triage report (format {FORMAT!r})")
    return data


def _similarity(clustering: Clustering, centroid: np.ndarray, terms: list[str], previous: dict[str, Any]) -> float:
    """How alike a cluster and one of last week's are: the larger of top-term overlap (Jaccard) and the cosine
    between this cluster's centroid and last week's representatives in this week's vector space."""
    before = set(previous.get("terms") or [])
    jaccard = len(before & set(terms)) / len(before | set(terms)) if before or terms else 0.0
    texts = [input_text(m["inputs"]) for m in previous.get("members", [])[:REPRESENTATIVES]
             if isinstance(m, dict) and isinstance(m.get("inputs"), dict)]
    cosine = 0.0
    if texts:
        profile = np.asarray(clustering.transform(texts).mean(axis=0)).ravel()
        norms = float(np.linalg.norm(profile) * np.linalg.norm(centroid))
        cosine = float(profile @ centroid) / norms if norms else 0.0
    return max(jaccard, cosine)


def _type_change(now: dict[str, int], before: dict[str, int] | None) -> dict[str, dict[str, Any]]:
    total_now, total_before = sum(now.values()), sum((before or {}).values())
    out = {}
    for name in sorted(set(now) | set(before or {}), key=lambda k: (-now.get(k, 0), k)):
        n, m = now.get(name, 0), (before or {}).get(name, 0)
        out[name] = {"this_week": n, "last_week": None if before is None else m,
                     "share": round(n / total_now, 4) if total_now else 0.0,
                     "last_share": None if before is None else (round(m / total_before, 4) if total_before else 0.0)}
    return out


def _signature_report(name: str, failures: list[Failure], week: IsoWeek, previous: dict[str, Any] | None,
                      options: TriageOptions) -> dict[str, Any]:
    with_inputs = [f for f in failures if f.inputs]
    clustering = cluster_texts([input_text(f.inputs or {}) for f in with_inputs],
                               distance_threshold=options.distance_threshold)
    last_clusters = (previous or {}).get("clusters") or []
    clusters = []
    for cluster in clustering.clusters:
        members = [with_inputs[i] for i in cluster.members]
        best, best_id = 0.0, None
        for old in last_clusters:
            if isinstance(old, dict):
                score = _similarity(clustering, cluster.centroid, cluster.terms, old)
                if score > best:
                    best, best_id = score, old.get("id")
        recurring = best_id is not None and best >= options.recurring_similarity
        clusters.append({
            "terms": cluster.terms, "size": len(members), "status": "recurring" if recurring else "new",
            "matches": best_id if recurring else None, "similarity": round(best, 3),
            "priority": round(len(members) * (1.0 if recurring else NOVELTY_WEIGHT), 3),
            "failure_types": failure_types(members),
            "representatives": [m.request_id for m in members[:REPRESENTATIVES]],
            "members": [m.to_dict() for m in members]})
    clusters.sort(key=lambda c: (-c["priority"], -c["size"], c["members"][0]["request_id"]))
    for rank, cluster in enumerate(clusters, start=1):
        cluster["id"] = f"{name}/{week}/c{rank}"
        cluster["rank"] = rank
    types = failure_types(failures)
    last_types = (previous or {}).get("failure_types") if previous is not None else None
    return {"failures": len(failures), "clustered": len(with_inputs),
            "without_inputs": [f.to_dict() for f in failures if not f.inputs],
            "failure_types": types, "failure_type_change": _type_change(types, last_types),
            "previous_failures": None if previous is None else previous.get("failures", 0),
            "clusters": [{"id": c.pop("id"), "rank": c.pop("rank"), **c} for c in clusters]}


def build_report(found: WeekFailures, week: IsoWeek, previous: dict[str, Any] | None,
                 options: TriageOptions, *, on_signature: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The triage report of ``week`` from its failures, compared with ``previous`` (last week's report)."""
    last = (previous or {}).get("signatures") or {}
    names = sorted(set(found.failures) | set(found.low_canaries)
                   | ({n for n in last if options.signature in (None, n)} if previous else set()))
    signatures = {}
    for name in names:
        if on_signature is not None:
            on_signature(name)
        report = _signature_report(name, found.failures.get(name, []), week,
                                   last.get(name, {"failures": 0, "failure_types": {}, "clusters": []})
                                   if previous is not None else None, options)
        report["low_canary_runs"] = [c.to_dict() for c in found.low_canaries.get(name, [])]
        signatures[name] = report
    return _finish({"format": FORMAT, "week": str(week), "start": week.start.isoformat(),
                    "end": week.end.isoformat(), "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "previous_week": str(week.previous()), "previous_report": previous is not None,
                    "options": options.to_dict(), "scan": found.scan.to_dict(), "signatures": signatures})


def _finish(report: dict[str, Any]) -> dict[str, Any]:
    """Add the annotation queue (every cluster by priority) and the totals to a report."""
    signatures = report["signatures"]
    queue = sorted(({"signature": n, "cluster": c["id"], "priority": c["priority"], "size": c["size"],
                     "status": c["status"]} for n, s in signatures.items() for c in s["clusters"]),
                   key=lambda q: (-q["priority"], q["cluster"]))
    totals = {"failures": sum(s["failures"] for s in signatures.values()),
              "clusters": sum(len(s["clusters"]) for s in signatures.values()),
              "new_clusters": sum(1 for q in queue if q["status"] == "new"),
              "recurring_clusters": sum(1 for q in queue if q["status"] == "recurring"),
              "without_inputs": sum(len(s["without_inputs"]) for s in signatures.values()),
              "low_canary_runs": sum(len(s["low_canary_runs"]) for s in signatures.values())}
    signatures = report.pop("signatures")
    return {**report, "totals": totals, "queue": queue, "signatures": signatures}


def write_report(reports_dir: Path, report: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    """Write the report's ``.md`` and ``.json`` atomically, owner-only (they hold user inputs)."""
    week = report["week"]
    md_path, json_path = reports_dir / f"triage_{week}.md", reports_dir / f"triage_{week}.json"
    atomic_write_json(json_path, report)
    atomic_write_text(md_path, markdown)
    return md_path, json_path


def run_triage(home: Path, db: StateDB | None, week: IsoWeek, options: TriageOptions | None = None, *,
               on_step: Callable[[str], None] | None = None,
               telemetry_dir: Path | None = None) -> tuple[dict[str, Any], Path, Path]:
    """Collect, cluster, compare and write the week's triage report under ``home``; returns it and its paths.
    ``telemetry_dir`` (default ``<home>/telemetry``): where the telemetry files are (every host's, with the shared
    sink: :func:`ratchet.telemetry.database.telemetry_view`)."""
    from ratchet.flywheel.report import render_markdown

    options = options or TriageOptions()
    step = on_step or (lambda _message: None)
    reports_dir = Path(home) / "reports"
    previous = load_report(reports_dir, week.previous())
    step("reading telemetry and feedback")
    found = collect_failures(telemetry_dir or Path(home) / "telemetry", db, week,
                             score_threshold=options.score_threshold, canary_threshold=options.canary_threshold,
                             signature=options.signature,
                             lookback_days=options.lookback_days)
    report = build_report(found, week, previous, options, on_signature=lambda name: step(f"clustering {name}"))
    if options.signature is not None:  # one signature re-triaged: keep the others of this week's report
        current = load_report(reports_dir, week)
        if current is not None:
            others = {n: s for n, s in (current.get("signatures") or {}).items() if n != options.signature}
            report["signatures"] = dict(sorted({**others, **report["signatures"]}.items()))
            report = _finish({k: v for k, v in report.items() if k not in ("totals", "queue")})
    step("writing the report")
    md_path, json_path = write_report(reports_dir, report, render_markdown(report))
    return report, md_path, json_path


def forget_requests(reports_dir: Path, request_ids: set[str]) -> dict[str, int]:
    """Take these requests out of every triage report under ``reports_dir`` (a user's data deletion): their members,
    representatives and failures without inputs go, cluster sizes follow; each changed report is rewritten
    atomically, Markdown included. Returns per report file how many entries went. A report that cannot be read
    is left alone and named in a ``DataError`` after the others are done."""
    from ratchet.flywheel.report import render_markdown

    if not request_ids or not reports_dir.is_dir():
        return {}
    changed: dict[str, int] = {}
    unreadable = []
    for path in sorted(reports_dir.glob("triage_*.json")):
        try:
            report = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            unreadable.append(path.name)
            continue
        removed = 0
        for sig in (report.get("signatures") or {}).values():
            kept = [f for f in sig.get("without_inputs", []) if f.get("request_id") not in request_ids]
            removed += len(sig.get("without_inputs", [])) - len(kept)
            sig["without_inputs"] = kept
            clusters = []
            for cluster in sig.get("clusters", []):
                members = [m for m in cluster.get("members", []) if m.get("request_id") not in request_ids]
                gone = len(cluster.get("members", [])) - len(members)
                removed += gone
                if not members:
                    continue  # its name came from the deleted texts alone
                if gone:  # a name word only the deleted texts held goes with them
                    texts = " ".join(input_text(m.get("inputs") or {}) for m in members).lower()
                    cluster["terms"] = [t for t in cluster.get("terms", []) if t.lower() in texts]
                cluster["members"], cluster["size"] = members, len(members)
                cluster["representatives"] = [r for r in cluster.get("representatives", []) if r not in request_ids]
                clusters.append(cluster)
            sig["clusters"] = clusters
        if removed:
            kept = {c["id"]: c["size"] for sig in (report.get("signatures") or {}).values() for c in sig["clusters"]}
            report["queue"] = [{**q, "size": kept[q["cluster"]]} for q in report.get("queue", [])
                               if q.get("cluster") in kept]
            atomic_write_json(path, report)
            atomic_write_text(path.with_suffix(".md"), render_markdown(report))
            changed[path.name] = removed
    if unreadable:
        raise DataError(f"triage reports not readable, left as they are: {', '.join(unreadable)}")
    return changed
