"""Leasing tasks to annotators (compare-and-set: two annotators never hold the same task) and taking answers.

A task is ``open`` until an annotator leases it with :func:`next_task`; the lease lasts ``lease_s`` seconds and an
expired lease puts the task back in the queue. :func:`submit` takes the holder's answer, validated against the
signature; the task is ``done`` once it has as many answers (accept, correct or reject, by different annotators)
as it needs, else it is open again for someone who has not answered it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ratchet.annotate.model import MAX_SKIPS, Annotation, AnnotationError, LeaseError, Task
from ratchet.annotate.tasks import get_task
from ratchet.errors import InputValidationError
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB
from ratchet.store.tables import annotation_tasks as t
from ratchet.store.tables import annotations as a

__all__ = ["next_task", "release", "submit"]

_CANDIDATES = 8  # tasks tried per round before the queue is read again


def _available(now: float) -> Any:
    """Open, or leased with an expired lease."""
    return or_(t.c.status == "open", and_(t.c.status == "leased", t.c.lease_expires_at <= now))


def next_task(db: StateDB, *, annotator: str, signature: str | None = None, lease_s: float = 900.0) -> Task | None:
    """Lease the highest-priority available task ``annotator`` has not answered (or renew the one they hold).

    Returns None when the queue has nothing for them. Each candidate is taken by a conditional update
    (still available?), so racing annotators on any number of processes or hosts never get the same task.
    """
    if not annotator:
        raise AnnotationError("an annotator name is required")
    if lease_s <= 0:
        raise AnnotationError(f"lease_s must be positive, got {lease_s}")
    while True:
        now = time.time()
        with db.begin() as conn:
            held = select(t.c.task_id).where(t.c.status == "leased", t.c.lease_holder == annotator,
                                             t.c.lease_expires_at > now)
            answered = exists().where(a.c.task_id == t.c.task_id, a.c.annotator == annotator)
            free = select(t.c.task_id).where(_available(now), ~answered)
            if signature is not None:
                held = held.where(t.c.signature == signature)
                free = free.where(t.c.signature == signature)
            mine = conn.scalars(held.order_by(t.c.priority.desc(), t.c.created_at, t.c.task_id).limit(1)).first()
            candidates = [mine] if mine else list(conn.scalars(
                free.order_by(t.c.priority.desc(), t.c.created_at, t.c.task_id).limit(_CANDIDATES)))
        if not candidates:
            return None
        for task_id in candidates:
            if _take(db, task_id, annotator, lease_s):
                return get_task(db, task_id)
        # every candidate went to someone else meanwhile: read the queue again


def _take(db: StateDB, task_id: str, annotator: str, lease_s: float) -> bool:
    now = time.time()
    mine = and_(t.c.status == "leased", t.c.lease_holder == annotator)
    with db.begin(write=True) as conn:
        taken = conn.execute(update(t).where(t.c.task_id == task_id, or_(_available(now), mine))
                             .values(status="leased", lease_holder=annotator, lease_expires_at=now + lease_s,
                                     updated_at=now))
        return taken.rowcount == 1


def release(db: StateDB, task_id: str, annotator: str) -> bool:
    """Give a leased task back to the queue at once (only its holder can); True when it was theirs."""
    with db.begin(write=True) as conn:
        done = conn.execute(update(t).where(t.c.task_id == task_id, t.c.status == "leased",
                                            t.c.lease_holder == annotator)
                            .values(status="open", lease_holder=None, lease_expires_at=None, updated_at=time.time()))
        return done.rowcount == 1


def submit(db: StateDB, registry: ProgramRegistry, task_id: str, annotator: str, *,
           set_values: Mapping[str, Any] | None = None, accept: bool = False, reject: bool = False,
           skip: bool = False, reason: str | None = None) -> Annotation:
    """Record ``annotator``'s answer on a task they hold: exactly one of ``set_values`` (a correction: fields
    replacing the model's output), ``accept``, ``reject`` (``reason`` required) or ``skip``.

    Corrected values are validated against the signature's output fields (an unknown field, a label outside a
    ``Literal`` set or a wrong type raises ``InputValidationError`` naming the field). Only the lease holder may
    submit (``LeaseError``); a lease that expired is still theirs until another annotator takes the task.
    """
    chosen = [set_values is not None, accept, reject, skip]
    if sum(chosen) != 1:
        raise AnnotationError("give exactly one of: set values (a correction), accept, reject or skip")
    if reject and not (reason and reason.strip()):
        raise AnnotationError("a rejection needs a reason (--reason)")
    task = get_task(db, task_id)
    if task.status != "leased" or task.lease_holder != annotator:
        holder = f"it is {task.status}" + (f", leased to {task.lease_holder}" if task.status == "leased" else "")
        raise LeaseError(f"{annotator} does not hold the lease on task {task_id} ({holder}); "
                         "take it with `ratchet annotate next` first")
    kind, values = _answer(registry, task, set_values, accept=accept, reject=reject)
    now = time.time()
    answer = Annotation(task_id=task_id, annotator=annotator, kind=kind, values=values,
                        reason=reason.strip() if reason else None, created_at=now)
    try:
        with db.begin(write=True) as conn:
            conn.execute(insert(a).values(task_id=task_id, annotator=annotator, kind=kind,
                                          values=None if values is None else json.dumps(values, sort_keys=True),
                                          reason=answer.reason, created_at=now))
            counts = dict(conn.execute(select(a.c.kind, func.count()).where(a.c.task_id == task_id)
                                       .group_by(a.c.kind)).all())
            skips = counts.pop("skip", 0)
            answers = sum(counts.values())
            status = "done" if answers >= task.needed else "skipped" if skips >= MAX_SKIPS else "open"
            moved = conn.execute(update(t).where(t.c.task_id == task_id, t.c.status == "leased",
                                                 t.c.lease_holder == annotator)
                                 .values(status=status, lease_holder=None, lease_expires_at=None, updated_at=now))
            if moved.rowcount != 1:
                raise LeaseError(f"task {task_id} was taken over by another annotator while {annotator} answered")
    except IntegrityError:
        raise AnnotationError(f"{annotator} has already answered task {task_id}") from None
    return answer


def _answer(registry: ProgramRegistry, task: Task, set_values: Mapping[str, Any] | None, *, accept: bool,
            reject: bool) -> tuple[str, dict[str, Any] | None]:
    if reject:
        return "reject", None
    if set_values is None and not accept:
        return "skip", None
    spec = registry.get(task.signature)
    outputs = spec.schema.output_names
    if set_values is not None:
        if not set_values:
            raise AnnotationError("a correction needs at least one field=value")
        unknown = [name for name in set_values if name not in outputs]
        if unknown:
            raise InputValidationError(f"unknown output field '{unknown[0]}' (expected: {', '.join(outputs)})",
                                       field=unknown[0])
    base = {name: task.output[name] for name in outputs if name in task.output}
    values = spec.schema.validate_outputs({**base, **dict(set_values or {})})
    values = json.loads(json.dumps(values, default=str))
    if set_values is None:
        return "accept", values
    return ("accept" if values == json.loads(json.dumps(base, default=str)) else "correct"), values
