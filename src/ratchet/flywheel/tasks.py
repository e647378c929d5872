"""Annotation task items from a triage report, in the order annotation should take them."""

from __future__ import annotations

from typing import Any

from ratchet.annotate import create_tasks
from ratchet.store.db import StateDB

__all__ = ["queue_tasks", "task_items"]


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


def queue_tasks(db: StateDB, report: dict[str, Any], *, double_share: float = 0.1) -> dict[str, dict[str, int]]:
    """Phase 1's last step: an annotation task for each clustered failure of the report's week, per signature.

    Idempotent (a failure already queued for the week is left alone), so re-running phase 1 after a crash
    or with ``--signature`` queues only what is new. Returns per signature how many were created, already
    queued, and need two annotators.
    """
    queued: dict[str, dict[str, int]] = {}
    for signature in sorted(report.get("signatures") or {}):
        items = task_items(report, signature)
        if not items:
            continue
        result = create_tasks(db, signature, items, week=report["week"], double_share=double_share,
                              seed=report["week"])
        queued[signature] = {"created": len(result.created), "existing": len(result.existing),
                             "double": result.double}
    return queued
