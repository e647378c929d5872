"""Golden-set regression (seed 004's daily eval): a version the newest ``ratchet eval-regression`` run found
significantly worse on its golden set than its reference is a warning naming the version, the numbers and the
reference. It reads the reports and runs no model; the next run's verdict resolves it.

When the run dispatches, each signature's newest golden scores are also written for Prometheus
(``<home>/metrics/ratchet_golden.prom``, :mod:`ratchet.monitor.golden_metrics`).
"""

from __future__ import annotations

from typing import Any

from ratchet.config import Settings
from ratchet.flywheel.regression import latest_report
from ratchet.monitor.alerts import Alert
from ratchet.monitor.golden_metrics import write_metrics
from ratchet.monitor.results import CheckResult
from ratchet.programs.registry import ProgramRegistry

__all__ = ["HINT", "NAME", "check_golden", "newest_reports"]

NAME = "golden"
HINT = ("Open the run's report (<home>/eval_reports/<signature>/, the .md) for the examples that got worse. Same "
        "version: the model or the serving stack changed underneath — `ratchet canary history` tells which. Production "
        "changed: roll back with `ratchet programs promote <signature> <previous version>`. A candidate: roll its "
        "experiment back with `ratchet ab rollback`.")


def newest_reports(settings: Settings, registry: ProgramRegistry) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Each registered signature's newest eval report, and the signatures whose newest report is unreadable."""
    reports, problems = {}, {}
    for name in registry.names():
        try:
            report = latest_report(settings.home_dir, name)
        except ValueError as exc:
            problems[name] = str(exc)
            continue
        if report is not None:
            reports[name] = report
    return reports, problems


def check_golden(settings: Settings, *, registry: ProgramRegistry | None = None, export: bool = False
                 ) -> CheckResult:
    """Warn per version the newest eval-regression run found significantly worse; ``export`` writes the textfile."""
    if registry is None:
        from ratchet.programs import load_programs

        registry = load_programs(settings)
    reports, problems = newest_reports(settings, registry)
    result = CheckResult(NAME)
    for name, report in reports.items():
        result.scopes.append(f"{NAME}/regression/{name}/")
        for version in report.get("versions") or []:
            if version.get("regression"):
                result.alerts.append(_alert(name, report, version))
    result.summary = {"signatures": {name: {"run_at": r.get("run_at"), "golden_version": r.get("golden_version"),
                                            "regression": bool(r.get("regression")),
                                            "versions": {v["version"]: v.get("score") for v in r["versions"]}}
                                     for name, r in reports.items()},
                      "unreadable": problems}
    if export:
        write_metrics(settings.home_dir, reports)
    return result


def _alert(signature: str, report: dict[str, Any], version: dict[str, Any]) -> Alert:
    cmp, against = version.get("comparison") or {}, version.get("against") or {}
    details = {"signature": signature, "version": version["version"], "roles": version.get("roles"),
               "score": version.get("score"), "reference_version": against.get("version"),
               "basis": against.get("basis"), "mean_difference": cmp.get("mean_difference"),
               "ci_low": cmp.get("ci_low"), "ci_high": cmp.get("ci_high"), "p_value": cmp.get("p_value"),
               "n": cmp.get("n"), "run_at": report.get("run_at"), "report": report.get("_path"), "check": NAME,
               "hint": HINT}
    message = (f"{signature} (golden set {report.get('golden_version')}, run {report.get('run_at')}): "
               f"{version.get('message')}")
    return Alert("warning", "Golden Set Regression", message, details,
                 condition=f"{NAME}/regression/{signature}/{version['version']}")
