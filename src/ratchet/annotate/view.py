"""What an annotator sees for a task: the task, the allowed labels of each output field, the nearest labelled
examples. One function for every front end (``ratchet annotate next``, the console's annotation screen)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ratchet.annotate.model import Task
from ratchet.annotate.nearest import Neighbour, nearest_labelled
from ratchet.annotate.parse import allowed_labels
from ratchet.annotate.queue import next_task
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB

__all__ = ["TaskView", "next_view", "view_of"]


@dataclass(frozen=True)
class TaskView:
    """A leased task with what helps to answer it."""

    task: Task
    annotator: str
    labels: dict[str, list[Any]] = field(default_factory=dict)  # output field → its Literal choices
    nearest: list[Neighbour] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"task": self.task.to_dict(), "annotator": self.annotator, "allowed_labels": self.labels,
                "nearest": [n.to_dict() for n in self.nearest]}


def view_of(settings: Settings, registry: ProgramRegistry, task: Task, annotator: str, *, examples: int = 3
            ) -> TaskView:
    """The view of ``task`` (labels and neighbours only when its signature is registered)."""
    if task.signature not in registry:
        return TaskView(task, annotator)
    schema = registry.get(task.signature).schema
    store = DatasetStore(Path(settings.home_dir), settings.data, registry=registry)
    return TaskView(task, annotator, allowed_labels(schema),
                    nearest_labelled(store, task.signature, schema, task.inputs, k=examples))


def next_view(settings: Settings, registry: ProgramRegistry, db: StateDB, *, annotator: str,
              signature: str | None = None, lease_s: float = 900.0, examples: int = 3) -> TaskView | None:
    """Lease ``annotator``'s next task (:func:`~ratchet.annotate.next_task`) and its view; None when none waits.
    An unknown ``signature`` raises ``KeyError`` from the registry (an error, not an empty queue)."""
    if signature is not None:
        registry.get(signature)
    task = next_task(db, annotator=annotator, signature=signature, lease_s=lease_s)
    return None if task is None else view_of(settings, registry, task, annotator, examples=examples)
