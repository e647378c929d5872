"""The annotation queue (seed 004's human flywheel, item 2): tasks made from triaged failures, leased to one
annotator at a time, answered against the signature's schema, exported as labelled JSON Lines.

Triage (``ratchet.flywheel``) creates tasks with :func:`create_tasks`; annotators work through
:func:`next_task` and :func:`submit` (``ratchet annotate next|submit``); :func:`stats` and :func:`export` feed
the operators and the golden dataset.
"""

from ratchet.annotate.export import ExportResult, LabelledCase, LabelledCases, export, labelled_cases
from ratchet.annotate.model import (
    KINDS,
    MAX_SKIPS,
    STATUSES,
    Annotation,
    AnnotationError,
    LeaseError,
    Task,
    UnknownTaskError,
)
from ratchet.annotate.nearest import Neighbour, nearest_examples, nearest_labelled
from ratchet.annotate.parse import allowed_labels, parse_assignments
from ratchet.annotate.queue import next_task, release, submit
from ratchet.annotate.stats import Agreement, Backlog, QueueStats, cohen_kappa, stats
from ratchet.annotate.tasks import CreateResult, TaskItem, create_tasks, get_task, task_id_for
from ratchet.annotate.view import TaskView, next_view, view_of

__all__ = [
    "KINDS",
    "MAX_SKIPS",
    "STATUSES",
    "Agreement",
    "Annotation",
    "AnnotationError",
    "Backlog",
    "CreateResult",
    "ExportResult",
    "LabelledCase",
    "LabelledCases",
    "LeaseError",
    "Neighbour",
    "QueueStats",
    "Task",
    "TaskItem",
    "TaskView",
    "UnknownTaskError",
    "allowed_labels",
    "cohen_kappa",
    "create_tasks",
    "export",
    "get_task",
    "labelled_cases",
    "nearest_examples",
    "nearest_labelled",
    "next_task",
    "next_view",
    "parse_assignments",
    "release",
    "stats",
    "submit",
    "task_id_for",
    "view_of",
]
