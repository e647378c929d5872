"""What the annotation queue stores: tasks, annotations, their kinds and statuses, and its errors."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any, Literal

from ratchet.errors import RatchetError

__all__ = [
    "KINDS",
    "MAX_SKIPS",
    "STATUSES",
    "Annotation",
    "AnnotationError",
    "LeaseError",
    "Task",
    "UnknownTaskError",
]

Kind = Literal["accept", "correct", "reject", "skip"]
KINDS: tuple[str, ...] = ("accept", "correct", "reject", "skip")
STATUSES: tuple[str, ...] = ("open", "leased", "done", "skipped")
MAX_SKIPS = 2
"""A task skipped by this many different annotators leaves the queue (status ``skipped``)."""


class AnnotationError(RatchetError):
    """An annotation or a task request that the queue refuses."""


class UnknownTaskError(AnnotationError, KeyError):
    """No task has this id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class LeaseError(AnnotationError):
    """The annotator does not hold the task's lease (never had it, or another annotator took it over)."""


@dataclass(frozen=True)
class Task:
    """One case to annotate: a request's inputs and the model's output, with its cluster and lease."""

    task_id: str
    signature: str
    request_id: str
    week: str
    inputs: dict[str, Any]
    output: dict[str, Any]
    cluster_id: str | None
    cluster_label: str | None
    priority: float
    needed: int
    status: str
    lease_holder: str | None
    lease_expires_at: float | None
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> Task:
        return cls(task_id=row.task_id, signature=row.signature, request_id=row.request_id, week=row.week,
                   inputs=json.loads(row.inputs), output=json.loads(row.output), cluster_id=row.cluster_id,
                   cluster_label=row.cluster_label, priority=row.priority, needed=row.needed, status=row.status,
                   lease_holder=row.lease_holder, lease_expires_at=row.lease_expires_at, created_at=row.created_at)

    def leased_to(self, annotator: str, now: float | None = None) -> bool:
        """Whether ``annotator`` holds a live lease on the task."""
        now = time.time() if now is None else now
        return (self.status == "leased" and self.lease_holder == annotator
                and self.lease_expires_at is not None and self.lease_expires_at > now)

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "signature": self.signature, "request_id": self.request_id,
                "week": self.week, "inputs": self.inputs, "output": self.output, "cluster_id": self.cluster_id,
                "cluster_label": self.cluster_label, "priority": self.priority, "needed": self.needed,
                "status": self.status, "lease_holder": self.lease_holder,
                "lease_expires_at": self.lease_expires_at, "created_at": self.created_at}


@dataclass(frozen=True)
class Annotation:
    """One annotator's answer on one task."""

    task_id: str
    annotator: str
    kind: str
    values: dict[str, Any] | None
    reason: str | None
    created_at: float

    @classmethod
    def from_row(cls, row: Any) -> Annotation:
        return cls(task_id=row.task_id, annotator=row.annotator, kind=row.kind,
                   values=json.loads(row._mapping["values"]) if row._mapping["values"] else None, reason=row.reason,
                   created_at=row.created_at)

    def to_dict(self) -> dict[str, Any]:
        return {"task_id": self.task_id, "annotator": self.annotator, "kind": self.kind, "values": self.values,
                "reason": self.reason, "created_at": self.created_at}
