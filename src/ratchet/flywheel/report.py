"""The readable triage report (Markdown) rendered from the JSON one."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["render_markdown"]

_EXCERPT = 160


def _excerpt(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(text.split())
    text = text if len(text) <= _EXCERPT else text[: _EXCERPT - 1] + "…"
    return text.replace("|", "\\|")


def _inputs(inputs: dict[str, Any] | None) -> str:
    if not inputs:
        return "–"
    if len(inputs) == 1:
        return _excerpt(next(iter(inputs.values())))
    return "; ".join(f"{k}: {_excerpt(v)}" for k, v in inputs.items())


def _count(value: int | None) -> str:
    return "–" if value is None else str(value)


def _share(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.0f} %"


def _types_table(change: dict[str, dict[str, Any]]) -> list[str]:
    lines = ["| failure type | this week | share | last week | share |", "|---|---|---|---|---|"]
    for name, c in change.items():
        lines.append(f"| {name} | {c['this_week']} | {_share(c['share'])} | {_count(c['last_week'])} | "
                     f"{_share(c['last_share'])} |")
    return lines


def _cluster(cluster: dict[str, Any]) -> list[str]:
    status = cluster["status"]
    if status == "recurring":
        status += f" (like {cluster['matches']}, similarity {cluster['similarity']:.2f})"
    types = ", ".join(f"{k} {v}" for k, v in cluster["failure_types"].items())
    lines = [f"#### {cluster['rank']}. {', '.join(cluster['terms']) or '(no terms)'}", "",
             f"- size {cluster['size']} · {status} · priority {cluster['priority']:g}",
             f"- failure types: {types}", f"- id `{cluster['id']}`", "", "Representatives:", ""]
    for member in cluster["members"][: len(cluster["representatives"])]:
        output = _excerpt(member["output"]) if member.get("output") else "(no output)"
        if member.get("correction") is not None:
            output += f", corrected to {_excerpt(member['correction'])}"
        detail = f" — {_excerpt(member['detail'])}" if member.get("detail") else ""
        lines.append(f"- `{member['request_id']}` ({member['failure_type']}{detail}): {_inputs(member['inputs'])}"
                     f" → {output}")
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown of a triage report: summary, then per signature its failure types and clusters."""
    totals, scan = report["totals"], report["scan"]
    lines = [f"# Failure triage — {report['week']}", "",
             f"{report['start'][:10]} to {report['end'][:10]} (UTC), generated {report['generated_at']}.", "",
             "## Summary", ""]
    if not totals["failures"] and not totals["low_canary_runs"]:
        lines += ["No failures this week: no failed calls, no feedback under "
                  f"{report['options']['score_threshold']:g}, no corrections"
                  + (", no low canary runs." if report["options"]["canary_threshold"] is not None else "."), ""]
    else:
        lines += [f"- {totals['failures']} failures in {len(report['signatures'])} signature(s), "
                  f"{totals['clusters']} clusters ({totals['new_clusters']} new, "
                  f"{totals['recurring_clusters']} recurring)",
                  f"- {totals['without_inputs']} failures without sampled inputs (not clustered)",
                  f"- {totals['low_canary_runs']} canary runs under "
                  f"{report['options']['canary_threshold']}", ""]
    compared = (f"Clusters and failure types are compared with {report['previous_week']}."
                if report["previous_report"] else f"No report for {report['previous_week']}: every cluster is new.")
    lines += [f"Telemetry: {scan['files']} files, {scan['lines']} lines, {scan['interactions_in_week']} calls this "
              f"week, {scan['feedback_in_week']} feedback; skipped {scan['malformed_lines']} malformed lines and "
              f"{scan['invalid_records']} invalid records. {compared}", ""]
    for name, sig in report["signatures"].items():
        lines += [f"## {name}", "",
                  f"{sig['failures']} failures (last week: {_count(sig['previous_failures'])}), "
                  f"{sig['clustered']} clustered into {len(sig['clusters'])} clusters.", "",
                  "### Failure types", "", *_types_table(sig["failure_type_change"]), ""]
        if sig["clusters"]:
            lines += ["### Clusters", "", "Ordered by priority: size, doubled when new this week.", ""]
            for cluster in sig["clusters"]:
                lines += _cluster(cluster)
        if sig["without_inputs"]:
            ids = ", ".join(f"`{f['request_id']}`" for f in sig["without_inputs"][:20])
            more = len(sig["without_inputs"]) - 20
            lines += [f"Failures without sampled inputs: {ids}" + (f" and {more} more" if more > 0 else ""), ""]
        if sig["low_canary_runs"]:
            lines += ["### Low canary runs", "", "| version | score | probes | errors | parse failures |",
                      "|---|---|---|---|---|"]
            lines += [f"| {c['version']} | {c['score']:.3f} | {c['n']} | {c['errors']} | {c['parse_failures']} |"
                      for c in sig["low_canary_runs"]]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
