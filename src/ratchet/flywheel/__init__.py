"""The human flywheel, phase 1: triage a week's failures into named clusters for annotation.

``collect_failures`` reads one ISO week's failed calls, low scores and corrections per signature
(telemetry and the state database); ``cluster_texts`` groups them by input similarity (TF-IDF +
agglomerative clustering); ``run_triage`` names the clusters, marks them new or recurring against last
week's report, compares failure types and writes ``<home>/reports/triage_<week>.{md,json}``.
"""

from ratchet.flywheel.cluster import Clustering, TextCluster, cluster_texts
from ratchet.flywheel.collect import Failure, TriageScan, WeekFailures, collect_failures
from ratchet.flywheel.report import render_markdown
from ratchet.flywheel.tasks import queue_tasks, task_items
from ratchet.flywheel.triage import TriageOptions, build_report, load_report, report_paths, run_triage
from ratchet.flywheel.week import IsoWeek, last_week, parse_week

__all__ = [
    "Clustering",
    "Failure",
    "IsoWeek",
    "TextCluster",
    "TriageOptions",
    "TriageScan",
    "WeekFailures",
    "build_report",
    "cluster_texts",
    "collect_failures",
    "last_week",
    "load_report",
    "parse_week",
    "queue_tasks",
    "render_markdown",
    "report_paths",
    "run_triage",
    "task_items",
]
