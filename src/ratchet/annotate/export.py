"""Exporting answered tasks as labelled JSON Lines (the golden dataset's input), one file per signature.

Each line is a plain labelled example — the signature's input and output fields at the top level — plus a
``_meta`` object with its provenance (task id, annotators, request id, week, cluster, kind), the same shape
as the dataset store's examples. Accepted tasks carry the model's output, corrected ones the annotators'
values. A double-annotated task whose annotators disagree (different values, or one rejected) is not exported
but counted as a conflict. Files are written atomically and owner-only.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select

from ratchet.annotate.stats import answer_label
from ratchet.store.atomic import atomic_write_text
from ratchet.store.db import StateDB
from ratchet.store.private import make_private_dir
from ratchet.store.tables import annotation_tasks as t
from ratchet.store.tables import annotations as a

__all__ = ["ExportResult", "export"]

SOURCE = "annotation"


@dataclass
class ExportResult:
    """Per signature: the file written and how many cases went in, were rejected or conflicted."""

    files: dict[str, str] = field(default_factory=dict)
    exported: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    conflicts: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"files": self.files, "exported": self.exported, "rejected": self.rejected,
                "conflicts": self.conflicts}


def export(db: StateDB, output_dir: Path, signature: str | None = None) -> ExportResult:
    """Write ``<output_dir>/<signature>.jsonl`` for every signature (or just ``signature``) with done tasks."""
    query = (select(t.c.task_id, t.c.signature, t.c.request_id, t.c.week, t.c.inputs, t.c.cluster_id,
                    t.c.cluster_label, a.c.annotator, a.c.kind, a.c["values"].label("answer_values"),
                    a.c.created_at)
             .join(a, a.c.task_id == t.c.task_id)
             .where(t.c.status == "done", a.c.kind != "skip")
             .order_by(t.c.signature, t.c.created_at, t.c.task_id, a.c.created_at, a.c.annotator))
    if signature is not None:
        query = query.where(t.c.signature == signature)
    with db.begin(snapshot=True) as conn:
        rows = conn.execute(query).all()
    tasks: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        tasks[row.task_id].append(row)
    lines: dict[str, list[str]] = defaultdict(list)
    result = ExportResult()
    for answers in tasks.values():
        first = answers[0]
        name = first.signature
        labels = {answer_label(r.kind, r.answer_values) for r in answers}
        if len(labels) > 1:
            result.conflicts[name] = result.conflicts.get(name, 0) + 1
            continue
        if labels == {"reject"}:
            result.rejected[name] = result.rejected.get(name, 0) + 1
            continue
        values = json.loads(first.answer_values)
        kind = "correct" if any(r.kind == "correct" for r in answers) else "accept"
        meta = {"id": first.task_id, "signature": name, "source": SOURCE, "kind": kind,
                "metadata": {"task_id": first.task_id, "request_id": first.request_id, "week": first.week,
                             "annotators": [r.annotator for r in answers], "cluster_id": first.cluster_id,
                             "cluster_label": first.cluster_label}}
        lines[name].append(json.dumps({**json.loads(first.inputs), **values, "_meta": meta}, sort_keys=True))
    if lines:
        make_private_dir(Path(output_dir))
    for name, body in sorted(lines.items()):
        path = Path(output_dir) / f"{name}.jsonl"
        atomic_write_text(path, "".join(line + "\n" for line in body))
        result.files[name] = str(path)
        result.exported[name] = len(body)
    return result
