"""Phase 2 of the weekly flywheel (``ratchet flywheel run --week W --continue``) and its weekly report.

Phase 2 needs phase 1's triage report of the week. It first re-queues the report's tasks (idempotent: a crash
between phase 1's report and its queueing loses nothing), imports the answered tasks
(:func:`~ratchet.flywheel.imports.import_annotations`), optionally runs the golden-set evaluation, and writes
``<home>/reports/weekly_<week>.json`` (format ``ratchet.weekly/1``) and ``.md``: the week's clusters with their
annotation progress, the annotations done, the golden set's growth, the training data added and the eval
results.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ratchet.annotate import labelled_cases, stats
from ratchet.config import Settings
from ratchet.errors import DataError
from ratchet.flywheel.imports import WeekImport, destinations, import_annotations
from ratchet.flywheel.regression import latest_report
from ratchet.flywheel.tasks import queue_tasks
from ratchet.flywheel.triage import load_report
from ratchet.flywheel.week import IsoWeek
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.atomic import atomic_write_json, atomic_write_text
from ratchet.store.db import StateDB
from ratchet.store.tables import annotation_tasks as t

__all__ = ["FORMAT", "build_weekly_report", "golden_results", "render_weekly_markdown", "run_phase2", "weekly_paths"]

FORMAT = "ratchet.weekly/1"


def weekly_paths(reports_dir: Path, week: IsoWeek) -> tuple[Path, Path]:
    """The ``.md`` and ``.json`` weekly report files of ``week``."""
    return reports_dir / f"weekly_{week}.md", reports_dir / f"weekly_{week}.json"


def cluster_progress(db: StateDB, week: IsoWeek) -> dict[str, dict[str, int]]:
    """Per cluster of ``week``'s tasks: tasks by queue status, and the answered ones by outcome."""
    with db.begin(snapshot=True) as conn:
        rows = conn.execute(select(t.c.task_id, t.c.cluster_id, t.c.status).where(t.c.week == str(week))).all()
    clusters = {row.task_id: row.cluster_id or "(none)" for row in rows}
    out: dict[str, dict[str, int]] = {}

    def count(cluster: str, key: str) -> None:
        entry = out.setdefault(cluster, {})
        entry[key] = entry.get(key, 0) + 1

    for row in rows:
        count(clusters[row.task_id], row.status)
        count(clusters[row.task_id], "tasks")
    found = labelled_cases(db, task_ids=clusters)  # this week's tasks only
    for case in found.cases:
        count(clusters[case.task_id], "corrected" if case.kind == "correct" else "accepted")
    for key, pairs in (("rejected", found.rejected), ("conflicts", found.conflicts)):
        for _, task_id, _ in pairs:
            count(clusters[task_id], key)
    return out


def golden_results(home: Path, signatures: list[str]) -> dict[str, Any]:
    """Per signature, the newest golden-set evaluation (``ratchet eval-regression``): when, on which golden
    version, each version's score and change against its reference, and whether it regressed; None when there is
    none (or it cannot be read)."""
    out: dict[str, Any] = {}
    for name in signatures:
        try:
            report = latest_report(home, name)
        except DataError:
            report = None
        if report is None:
            out[name] = None
            continue
        out[name] = {"run_at": report.get("run_at"), "golden_version": report.get("golden_version"),
                     "golden_size": report.get("golden_size"), "regression": report.get("regression", False),
                     "versions": [{"version": v.get("version"), "roles": v.get("roles"), "score": v.get("score"),
                                   "n": v.get("n"), "comparison": v.get("comparison"),
                                   "regression": v.get("regression", False), "message": v.get("message")}
                                  for v in report.get("versions", [])]}
    return out


def build_weekly_report(triage: dict[str, Any], imported: WeekImport, ledger: Counter[str],
                        progress: dict[str, dict[str, int]], queue: dict[str, Any],
                        evaluation: dict[str, Any] | None) -> dict[str, Any]:
    """The weekly report's JSON from phase 1's report, this run's import, the week's ledger and the queue."""
    signatures: dict[str, Any] = {}
    for name, sig in sorted((triage.get("signatures") or {}).items()):
        clusters = [{"id": c["id"], "rank": c["rank"], "terms": c["terms"], "size": c["size"],
                     "status": c["status"], "annotation": progress.get(c["id"], {})}
                    for c in sig.get("clusters", [])]
        signatures[name] = {"failures": sig.get("failures", 0), "clusters": clusters}
    for name, part in imported.signatures.items():
        signatures.setdefault(name, {"failures": 0, "clusters": []})["import"] = part.to_dict()
    totals = {"annotated": sum(p.imported + p.rejected + p.conflicts for p in imported.signatures.values()),
              "golden_added": sum(p.golden_added for p in imported.signatures.values()),
              "golden_relabelled": sum(p.golden_relabelled for p in imported.signatures.values()),
              "training_added": sum(p.training_added for p in imported.signatures.values()),
              "imported_this_week": dict(sorted(ledger.items()))}
    return {"format": FORMAT, "week": imported.week, "start": triage.get("start"), "end": triage.get("end"),
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "golden_share": imported.golden_share, "triage": {"totals": triage.get("totals", {})},
            "totals": totals, "unregistered": imported.unregistered, "queue": queue,
            "evaluation": evaluation, "signatures": signatures}


def run_phase2(settings: Settings, registry: ProgramRegistry, db: StateDB, week: IsoWeek, *,
               signature: str | None = None, golden_share: float = 0.5, double_share: float = 0.1,
               evaluate: Callable[[], object] | None = None,
               on_step: Callable[[str], None] | None = None) -> tuple[dict[str, Any], Path, Path]:
    """Phase 2 for ``week``: re-queue, import, run ``evaluate`` when given (``ratchet eval-regression`` on the grown
    golden sets), write the weekly report with each signature's newest golden-set evaluation."""
    step = on_step or (lambda _message: None)
    reports_dir = Path(settings.home_dir) / "reports"
    triage = load_report(reports_dir, week)
    if triage is None:
        raise DataError(f"no triage report for {week} ({reports_dir}/triage_{week}.json): run phase 1 first, "
                        f"`ratchet flywheel run --week {week}`")
    step("checking the annotation queue")
    queue_tasks(db, triage, double_share=double_share)  # what a crash after phase 1's report left unqueued
    step("importing annotations")
    imported = import_annotations(settings, registry, db, week, signature=signature, golden_share=golden_share)
    if evaluate is not None:
        step("scoring the golden sets")
        evaluate()
    names = sorted(set(triage.get("signatures") or {}) | set(imported.signatures))
    evaluation = golden_results(Path(settings.home_dir), [n for n in names if n in registry])
    queue = stats(db).to_dict()
    report = build_weekly_report(triage, imported, destinations(db, week), cluster_progress(db, week), queue,
                                 evaluation)
    step("writing the weekly report")
    md_path, json_path = weekly_paths(reports_dir, week)
    atomic_write_json(json_path, report)
    atomic_write_text(md_path, render_weekly_markdown(report))
    return report, md_path, json_path


def render_weekly_markdown(report: dict[str, Any]) -> str:
    """The readable weekly report."""
    totals, triage = report["totals"], report["triage"]["totals"]
    ledger = totals["imported_this_week"]
    lines = [f"# Weekly flywheel report {report['week']}", "",
             f"{(report['start'] or '?')[:10]} to {(report['end'] or '?')[:10]} (UTC, Monday to Monday), generated "
             f"{report['generated_at']}.", "",
             "## Summary", "",
             f"- failures triaged: {triage.get('failures', 0)} in {triage.get('clusters', 0)} clusters "
             f"({triage.get('new_clusters', 0)} new, {triage.get('recurring_clusters', 0)} recurring)",
             f"- answered tasks handled by this run: {totals['annotated']} "
             f"(golden +{totals['golden_added']}, relabelled {totals['golden_relabelled']}; "
             f"training +{totals['training_added']}; the rest rejected, in conflict or already stored)",
             "- imported in this week's phase 2 so far: "
             + (", ".join(f"{k} {v}" for k, v in ledger.items()) or "nothing"),
             f"- golden share: {report['golden_share']:g} of the labelled cases go to the golden set, the rest "
             "to training (never both)", ""]
    for name, sig in report["signatures"].items():
        lines += [f"## {name}", ""]
        part = sig.get("import")
        if part:
            golden, training = part["golden"], part["training"]
            lines += [f"- answered: {part['accepted']} accepted, {part['corrected']} corrected, "
                      f"{part['rejected']} rejected, {part['conflicts']} in conflict "
                      f"({part['from_earlier_weeks']} from earlier weeks)",
                      f"- golden set: {golden['before']} → {golden['after']} examples "
                      f"(+{golden['added']}, {golden['relabelled']} relabelled; version {golden['version'] or '–'})",
                      f"- training data: +{training['added']} ({training['duplicates']} already there, "
                      f"{training['refused']} refused; version {training['version'] or '–'})", ""]
        if sig["clusters"]:
            lines += ["| # | cluster | size | status | tasks | done | open | accepted | corrected | rejected |",
                      "|---|---|---|---|---|---|---|---|---|---|"]
            for c in sig["clusters"]:
                a = c["annotation"]
                waiting = a.get("open", 0) + a.get("leased", 0)
                lines.append(f"| {c['rank']} | {', '.join(c['terms'][:4]) or '(no terms)'} | {c['size']} | "
                             f"{c['status']} | {a.get('tasks', 0)} | {a.get('done', 0)} | {waiting} | "
                             f"{a.get('accepted', 0)} | {a.get('corrected', 0)} | {a.get('rejected', 0)} |")
            lines.append("")
    lines += _queue_lines(report["queue"]) + _eval_lines(report["evaluation"])
    return "\n".join(lines).rstrip() + "\n"


def _queue_lines(queue: dict[str, Any]) -> list[str]:
    lines = ["## Annotation queue", ""]
    for b in queue.get("backlog", []):
        lines.append(f"- {b['signature']}: {b['open']} open, {b['leased']} leased, {b['done']} done, "
                     f"{b['skipped']} skipped")
    for g in queue.get("agreement", []):
        kappa = "–" if g["kappa"] is None else f"{g['kappa']:.2f}"
        lines.append(f"- agreement on {g['signature']}: {g['agreed']}/{g['tasks']} double-annotated tasks, "
                     f"Cohen's kappa {kappa}")
    if queue.get("annotators"):
        lines.append("- per annotator: " + "; ".join(
            f"{who} " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items()))
            for who, kinds in sorted(queue["annotators"].items())))
    return [*lines, ""]


def _eval_lines(evaluation: dict[str, Any] | None) -> list[str]:
    lines = ["## Golden-set evaluation", ""]
    for name, result in (evaluation or {}).items():
        if result is None:
            lines.append(f"- {name}: no evaluation yet (`ratchet eval-regression -s {name}`, the daily job)")
            continue
        verdict = "**REGRESSION**" if result["regression"] else "no significant regression"
        lines.append(f"- {name}: {result['run_at']} on golden {result['golden_version']} "
                     f"({result['golden_size']} examples): {verdict}")
        for v in result["versions"]:
            cmp = v.get("comparison")
            change = (f", {cmp['mean_difference'] * 100:+.1f} points ({cmp['ci_low'] * 100:+.1f} to "
                      f"{cmp['ci_high'] * 100:+.1f})" if cmp else "")
            score = "–" if v.get("score") is None else f"{v['score']:.3f}"
            lines.append(f"  - {v['version']} ({', '.join(v.get('roles') or [])}): {score}{change}")
    return [*lines, ""] if len(lines) > 2 else [*lines, "no signature to evaluate", ""]
