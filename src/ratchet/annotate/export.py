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
from collections.abc import Collection
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

__all__ = ["ExportResult", "LabelledCase", "LabelledCases", "export", "labelled_cases"]

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


@dataclass(frozen=True)
class LabelledCase:
    """A done task the annotators agree on: its inputs, the output values they stand behind, and provenance."""

    task_id: str
    signature: str
    request_id: str
    week: str
    inputs: dict[str, Any]
    values: dict[str, Any]
    kind: str  # "correct" when any annotator corrected the model, else "accept"
    annotators: tuple[str, ...]
    cluster_id: str | None
    cluster_label: str | None

    def meta(self) -> dict[str, Any]:
        """The ``_meta`` object of the case as a labelled example (``source`` annotation, provenance inside)."""
        return {"id": self.task_id, "signature": self.signature, "source": SOURCE, "kind": self.kind,
                "metadata": {"task_id": self.task_id, "request_id": self.request_id, "week": self.week,
                             "annotators": list(self.annotators), "cluster_id": self.cluster_id,
                             "cluster_label": self.cluster_label}}

    def to_json(self) -> dict[str, Any]:
        """The case as one labelled example object: input and output fields at the top level, plus ``_meta``."""
        return {**self.inputs, **self.values, "_meta": self.meta()}


@dataclass
class LabelledCases:
    """What the done tasks yield: agreed cases, and per task id those rejected and those in conflict."""

    cases: list[LabelledCase] = field(default_factory=list)
    rejected: list[tuple[str, str, str]] = field(default_factory=list)  # (signature, task id, week)
    conflicts: list[tuple[str, str, str]] = field(default_factory=list)


def labelled_cases(db: StateDB, *, signature: str | None = None, task_ids: Collection[str] | None = None,
                   through_week: str | None = None) -> LabelledCases:
    """The done tasks (of ``signature``, of weeks up to ``through_week``, or just ``task_ids``) as agreed cases,
    rejections and conflicts, oldest task first."""
    query = (select(t.c.task_id, t.c.signature, t.c.request_id, t.c.week, t.c.inputs, t.c.cluster_id,
                    t.c.cluster_label, a.c.annotator, a.c.kind, a.c["values"].label("answer_values"),
                    a.c.created_at)
             .join(a, a.c.task_id == t.c.task_id)
             .where(t.c.status == "done", a.c.kind != "skip")
             .order_by(t.c.signature, t.c.created_at, t.c.task_id, a.c.created_at, a.c.annotator))
    if signature is not None:
        query = query.where(t.c.signature == signature)
    if through_week is not None:
        query = query.where(t.c.week <= through_week)
    if task_ids is not None:
        query = query.where(t.c.task_id.in_(sorted(task_ids)))
    with db.begin(snapshot=True) as conn:
        rows = conn.execute(query).all()
    tasks: dict[str, list[Any]] = defaultdict(list)
    for row in rows:
        tasks[row.task_id].append(row)
    out = LabelledCases()
    for answers in tasks.values():
        first = answers[0]
        labels = {answer_label(r.kind, r.answer_values) for r in answers}
        if len(labels) > 1:
            out.conflicts.append((first.signature, first.task_id, first.week))
        elif labels == {"reject"}:
            out.rejected.append((first.signature, first.task_id, first.week))
        else:
            kind = "correct" if any(r.kind == "correct" for r in answers) else "accept"
            out.cases.append(LabelledCase(
                task_id=first.task_id, signature=first.signature, request_id=first.request_id, week=first.week,
                inputs=json.loads(first.inputs), values=json.loads(first.answer_values), kind=kind,
                annotators=tuple(r.annotator for r in answers), cluster_id=first.cluster_id,
                cluster_label=first.cluster_label))
    return out


def export(db: StateDB, output_dir: Path, signature: str | None = None) -> ExportResult:
    """Write ``<output_dir>/<signature>.jsonl`` for every signature (or just ``signature``) with done tasks."""
    found = labelled_cases(db, signature=signature)
    result = ExportResult()
    for name, _, _ in found.conflicts:
        result.conflicts[name] = result.conflicts.get(name, 0) + 1
    for name, _, _ in found.rejected:
        result.rejected[name] = result.rejected.get(name, 0) + 1
    lines: dict[str, list[str]] = defaultdict(list)
    for case in found.cases:
        lines[case.signature].append(json.dumps(case.to_json(), sort_keys=True))
    if lines:
        make_private_dir(Path(output_dir))
    for name, body in sorted(lines.items()):
        path = Path(output_dir) / f"{name}.jsonl"
        atomic_write_text(path, "".join(line + "\n" for line in body))
        result.files[name] = str(path)
        result.exported[name] = len(body)
    return result
