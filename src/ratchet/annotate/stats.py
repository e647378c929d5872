"""Queue health: the backlog per signature, answers per annotator, and agreement (Cohen's kappa) on the tasks
two annotators answered."""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from ratchet.store.db import StateDB
from ratchet.store.tables import annotation_tasks as t
from ratchet.store.tables import annotations as a

__all__ = ["Agreement", "Backlog", "QueueStats", "cohen_kappa", "stats"]


def cohen_kappa(first: Sequence[str], second: Sequence[str]) -> float | None:
    """Cohen's kappa of two raters' labels on the same items: (p_o − p_e) / (1 − p_e).

    None when there are no items; 1.0 when both raters use one and the same label throughout (p_e = 1).
    """
    if len(first) != len(second):
        raise ValueError("both raters must label the same items")
    n = len(first)
    if n == 0:
        return None
    observed = sum(x == y for x, y in zip(first, second, strict=True)) / n
    left, right = Counter(first), Counter(second)
    expected = sum(left[label] * right[label] for label in left) / (n * n)
    if expected >= 1.0:
        return 1.0 if observed >= 1.0 else 0.0
    return (observed - expected) / (1.0 - expected)


@dataclass
class Backlog:
    """One signature's queue: tasks open (including expired leases), leased, done and skipped."""

    signature: str
    open: int = 0
    leased: int = 0
    done: int = 0
    skipped: int = 0
    oldest_age_s: float | None = None  # age of the oldest task still waiting (open or leased)

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "open": self.open, "leased": self.leased, "done": self.done,
                "skipped": self.skipped, "oldest_age_s": self.oldest_age_s}


@dataclass
class Agreement:
    """Agreement on one signature's tasks with two answers: how many, how many agreed, and Cohen's kappa."""

    signature: str
    tasks: int
    agreed: int
    kappa: float | None

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "tasks": self.tasks, "agreed": self.agreed, "kappa": self.kappa}


@dataclass
class QueueStats:
    backlog: list[Backlog] = field(default_factory=list)
    annotators: dict[str, dict[str, int]] = field(default_factory=dict)  # annotator → kind → count
    agreement: list[Agreement] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"backlog": [b.to_dict() for b in self.backlog], "annotators": self.annotators,
                "agreement": [g.to_dict() for g in self.agreement]}


def answer_label(kind: str, values: str | None) -> str:
    """What two answers are compared on: the corrected or accepted output (canonical JSON), or ``reject``."""
    if kind == "reject" or values is None:
        return "reject"
    return json.dumps(json.loads(values), sort_keys=True)


def stats(db: StateDB, *, now: float | None = None) -> QueueStats:
    """Backlog per signature, answers per annotator, and per-signature agreement on double-annotated tasks."""
    now = time.time() if now is None else now
    out = QueueStats()
    backlogs: dict[str, Backlog] = {}
    with db.begin(snapshot=True) as conn:
        for row in conn.execute(select(t.c.signature, t.c.status, t.c.lease_expires_at, t.c.created_at)):
            backlog = backlogs.setdefault(row.signature, Backlog(row.signature))
            status = row.status
            if status == "leased" and (row.lease_expires_at or 0) <= now:
                status = "open"  # an expired lease is back in the queue
            setattr(backlog, status, getattr(backlog, status) + 1)
            if status in ("open", "leased"):
                age = max(0.0, now - row.created_at)
                backlog.oldest_age_s = max(backlog.oldest_age_s or 0.0, age)
        answers = conn.execute(select(a.c.task_id, a.c.annotator, a.c.kind, a.c["values"].label("answer_values"),
                                      a.c.created_at, t.c.signature, t.c.needed).join(t, t.c.task_id == a.c.task_id)
                               .order_by(a.c.task_id, a.c.created_at, a.c.annotator)).all()
    out.backlog = [backlogs[name] for name in sorted(backlogs)]
    per_task: dict[str, list[Any]] = defaultdict(list)
    for row in answers:
        kinds = out.annotators.setdefault(row.annotator, {})
        kinds[row.kind] = kinds.get(row.kind, 0) + 1
        if row.kind != "skip" and row.needed >= 2:
            per_task[row.task_id].append(row)
    pairs: dict[str, tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    for rows in per_task.values():
        if len(rows) >= 2:
            first, second = pairs[rows[0].signature]
            first.append(answer_label(rows[0].kind, rows[0].answer_values))
            second.append(answer_label(rows[1].kind, rows[1].answer_values))
    for signature in sorted(pairs):
        first, second = pairs[signature]
        out.agreement.append(Agreement(signature, len(first), sum(x == y for x, y in zip(first, second, strict=True)),
                                       cohen_kappa(first, second)))
    return out
