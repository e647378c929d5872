"""Making annotation tasks (idempotent by signature, request id and week) and reading them back."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ratchet.annotate.model import AnnotationError, Task, UnknownTaskError
from ratchet.hashing import sha256_hex
from ratchet.store.db import StateDB
from ratchet.store.tables import NAME_LEN, annotation_tasks

__all__ = ["CreateResult", "TaskItem", "create_tasks", "get_task", "needs_two", "task_id_for"]

_WEEK = re.compile(r"^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$")


@dataclass(frozen=True)
class TaskItem:
    """One case triage hands to the queue: a request, its (redacted) inputs, the model's output, its cluster."""

    request_id: str
    inputs: dict[str, Any]
    output: dict[str, Any]
    cluster_id: str | None = None
    cluster_label: str | None = None
    priority: float = 0.0

    @classmethod
    def coerce(cls, item: TaskItem | Mapping[str, Any]) -> TaskItem:
        """A ``TaskItem`` from itself or a mapping with the same keys (``cluster`` is read as ``cluster_id``)."""
        if isinstance(item, TaskItem):
            return item
        try:
            return cls(request_id=str(item["request_id"]), inputs=dict(item["inputs"]), output=dict(item["output"]),
                       cluster_id=_opt_str(item.get("cluster_id", item.get("cluster"))),
                       cluster_label=_opt_str(item.get("cluster_label")), priority=float(item.get("priority", 0.0)))
        except (KeyError, TypeError, ValueError) as exc:
            raise AnnotationError(f"a task item needs request_id, inputs and output (objects): {exc}") from None


@dataclass
class CreateResult:
    """What ``create_tasks`` did: ids of the tasks it made and of those that already existed."""

    created: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    double: int = 0  # created tasks that need two annotators

    def to_dict(self) -> dict[str, Any]:
        return {"created": self.created, "existing": self.existing, "double": self.double}


def task_id_for(signature: str, request_id: str, week: str) -> str:
    """The stable id of the task for a request in a week (the same on every host and run)."""
    return sha256_hex(f"annotation:{signature}:{request_id}:{week}")[:20]


def needs_two(task_id: str, *, double_share: float, seed: int | str) -> bool:
    """Whether a task goes to two annotators: a stable draw of ``seed`` and the task id under ``double_share``."""
    draw = int(sha256_hex(f"{seed}:{task_id}")[:15], 16) / 16**15
    return draw < double_share


def create_tasks(db: StateDB, signature: str, items: Iterable[TaskItem | Mapping[str, Any]], *, week: str,
                 double_share: float = 0.1, seed: int | str = 0) -> CreateResult:
    """Queue one task per item; an item whose (signature, request id, week) already has a task is left alone.

    ``double_share`` of the new tasks (a stable draw from ``seed`` and the task id) need two annotators.
    """
    if not _WEEK.match(week):
        raise AnnotationError(f"week must look like 2026-W48, got {week!r}")
    if not 0.0 <= double_share <= 1.0:
        raise AnnotationError(f"double_share must be between 0 and 1, got {double_share}")
    if not signature or len(signature) > NAME_LEN:
        raise AnnotationError("signature must be a non-empty name")
    result = CreateResult()
    now = time.time()
    rows: dict[str, dict[str, Any]] = {}
    for raw in items:
        item = TaskItem.coerce(raw)
        if not item.request_id or len(item.request_id) > NAME_LEN:
            raise AnnotationError(f"request_id must be 1–{NAME_LEN} characters, got {item.request_id!r}")
        task_id = task_id_for(signature, item.request_id, week)
        needed = 2 if needs_two(task_id, double_share=double_share, seed=seed) else 1
        rows.setdefault(task_id, {
            "task_id": task_id, "signature": signature, "request_id": item.request_id, "week": week,
            "inputs": json.dumps(item.inputs, sort_keys=True, default=str),
            "output": json.dumps(item.output, sort_keys=True, default=str),
            "cluster_id": item.cluster_id, "cluster_label": item.cluster_label, "priority": item.priority,
            "needed": needed, "status": "open", "lease_holder": None, "lease_expires_at": None,
            "created_at": now, "updated_at": now,
        })
    if not rows:
        return result
    with db.begin(write=True) as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        for task_id, row in rows.items():
            done = conn.execute(insert(annotation_tasks).values(**row).on_conflict_do_nothing()
                                .returning(annotation_tasks.c.task_id)).first()
            if done is not None:
                result.created.append(task_id)
                result.double += row["needed"] == 2
            else:
                result.existing.append(task_id)
    return result


def get_task(db: StateDB, task_id: str) -> Task:
    """The task with this id; ``UnknownTaskError`` when there is none."""
    with db.begin() as conn:
        row = conn.execute(select(annotation_tasks).where(annotation_tasks.c.task_id == task_id)).first()
    if row is None:
        raise UnknownTaskError(f"no annotation task {task_id!r} (see `ratchet annotate next`)")
    return Task.from_row(row)


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
