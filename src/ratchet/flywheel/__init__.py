"""The human flywheel: phase 1 triages a week's failures into named clusters for annotation; phase 2 imports
the answers into the golden set and the training data and writes the weekly report.

``collect_failures`` reads one ISO week's failed calls, low scores and corrections per signature
(telemetry and the state database); ``cluster_texts`` groups them by input similarity (TF-IDF +
agglomerative clustering); ``run_triage`` names the clusters, marks them new or recurring against last
week's report, compares failure types and writes ``<home>/reports/triage_<week>.{md,json}``.
``run_phase2`` imports the week's answered annotation tasks (``import_annotations``) and writes
``<home>/reports/weekly_<week>.{md,json}``.
``run_eval_regression`` scores production and live candidates on each golden set against the previous run
(``<home>/eval_reports/<signature>/``).
"""

from ratchet.flywheel.cluster import Clustering, TextCluster, cluster_texts
from ratchet.flywheel.collect import Failure, TriageScan, WeekFailures, collect_failures
from ratchet.flywheel.imports import SignatureImport, WeekImport, goes_to_golden, import_annotations
from ratchet.flywheel.regression import (
    REPORTS_DIRNAME,
    RegressionRun,
    SignatureRegression,
    VersionRegression,
    latest_report,
    read_report,
    report_history,
    run_eval_regression,
)
from ratchet.flywheel.report import render_markdown
from ratchet.flywheel.tasks import queue_tasks, task_items
from ratchet.flywheel.triage import (
    TriageOptions,
    build_report,
    forget_requests,
    load_report,
    report_paths,
    run_triage,
)
from ratchet.flywheel.week import IsoWeek, last_week, parse_week
from ratchet.flywheel.weekly import build_weekly_report, render_weekly_markdown, run_phase2, weekly_paths

__all__ = [
    "REPORTS_DIRNAME",
    "Clustering",
    "Failure",
    "IsoWeek",
    "RegressionRun",
    "SignatureImport",
    "SignatureRegression",
    "TextCluster",
    "TriageOptions",
    "TriageScan",
    "VersionRegression",
    "WeekFailures",
    "WeekImport",
    "build_report",
    "build_weekly_report",
    "cluster_texts",
    "collect_failures",
    "forget_requests",
    "goes_to_golden",
    "import_annotations",
    "last_week",
    "latest_report",
    "load_report",
    "parse_week",
    "queue_tasks",
    "read_report",
    "render_markdown",
    "render_weekly_markdown",
    "report_history",
    "report_paths",
    "run_eval_regression",
    "run_phase2",
    "run_triage",
    "task_items",
    "weekly_paths",
]
