"""Annotation task items from a triage report, in the order annotation should take them."""

from __future__ import annotations

from typing import Any

__all__ = ["task_items"]


def task_items(report: dict[str, Any], signature: str) -> list[dict[str, Any]]:
    """One item per clustered failure of ``signature`` (the shape ``ratchet.annotate.create_tasks`` takes).

    Clusters come by priority and members representatives-first; each item's priority is its cluster's
    (a whole number) plus a fraction under 0.5 that falls along this order, so a queue ordered by priority
    takes a cluster whole, representatives first, and clusters of equal priority one after the other.
    A failed call has no output: its output is ``{}``.
    """
    clusters = ((report.get("signatures") or {}).get(signature) or {}).get("clusters", [])
    total = sum(len(c["members"]) for c in clusters)
    items = []
    for cluster in clusters:  # already by priority, ties broken by size
        for member in cluster["members"]:
            items.append({"request_id": member["request_id"], "inputs": member["inputs"] or {},
                          "output": member.get("output") or {}, "cluster_id": cluster["id"],
                          "cluster_label": ", ".join(cluster["terms"]),
                          "priority": round(cluster["priority"] + 0.5 * (1 - len(items) / total), 6)})
    return items
