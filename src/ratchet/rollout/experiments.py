"""A/B experiments and their events in the state database.

State machine::

    start ──▶ shadow ──advance──▶ running(stage 0)      (an experiment may start in shadow, or at once:)
    start ──▶ running(stage k) ──advance──▶ running(stage k+1) ──…──▶ promoted
                 │   ▲                                                   ▲
           pause │   │ resume                                            │ promote (last stage, or by hand)
                 ▼   │                                                   │
               paused ───────────────────────────────────────────────────┘
       shadow / running / paused ──rollback (a trigger, or by hand)──▶ rolled_back

In ``shadow`` the candidate serves nobody: it also answers a share of production's
requests (``config["shadow_share"]``), its answers are compared and dropped.
``promoted`` and ``rolled_back`` are final. Every change is one transaction that
compares-and-sets the experiment's ``revision`` and appends an event (time,
actor, reason, the per-arm metrics of that moment), so two monitors or an
operator racing a monitor can never both act. A unique index allows at most one
live (running or paused) experiment per signature.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from ratchet.errors import ConcurrentChangeError, ExperimentError, IllegalTransitionError, UnknownExperimentError
from ratchet.store.db import StateDB
from ratchet.store.tables import LIVE_STATUSES, experiment_events, experiments

__all__ = ["FINAL", "LIVE", "TRANSITIONS", "Experiment", "ExperimentEvent", "ExperimentStore"]

LIVE = LIVE_STATUSES
FINAL = ("promoted", "rolled_back")
TRANSITIONS: dict[str, tuple[str, ...]] = {  # kind → statuses it may start from
    "advance": ("shadow", "running"),
    "pause": ("running",),
    "resume": ("paused",),
    "promote": LIVE,
    "rollback": LIVE,
}


@dataclass
class Experiment:
    """One experiment's row."""

    experiment_id: str
    signature: str
    baseline_version: str
    candidate_version: str
    status: str
    stages: list[int]
    stage_index: int
    stage_started_at: float
    min_stage_minutes: float
    min_stage_requests: int
    salt: str
    config: dict[str, Any] = field(default_factory=dict)
    stage_start_requests: int = 0
    paused_at: float | None = None
    paused_seconds: float = 0.0
    reason: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    ended_at: float | None = None
    revision: int = 0
    lease_owner: str | None = None
    lease_expires_at: float | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def stage_percent(self) -> int:
        return self.stages[self.stage_index]

    @property
    def candidate_share(self) -> float:
        """The candidate's share of traffic in this state."""
        if self.status == "rolled_back":
            return 0.0
        if self.status == "promoted":
            return 1.0
        if self.status == "shadow":
            return 0.0
        return self.stage_percent / 100.0

    @property
    def final_traffic_percent(self) -> int:
        """The candidate's traffic percent now, or when it was rolled back: 0 in shadow (it served nobody)."""
        if self.status == "shadow" or self.config.get("rolled_back_in") == "shadow":
            return 0
        return self.stage_percent

    @property
    def shadow_share(self) -> float:
        """The share of production's requests the candidate also answers, unseen (only in shadow)."""
        return float(self.config.get("shadow_share", 0.0)) if self.status == "shadow" else 0.0

    def stage_elapsed(self, now: float) -> float:
        """Seconds spent in the current stage, not counting paused time."""
        paused = self.paused_seconds + (now - self.paused_at if self.paused_at is not None else 0.0)
        return max(0.0, now - self.stage_started_at - paused)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("lease_owner")
        out.pop("lease_expires_at")
        out["candidate_share"] = self.candidate_share
        out["shadow_share"] = self.shadow_share
        return out

    @classmethod
    def from_row(cls, row: Any) -> Experiment:
        data = dict(row._mapping)
        data["stages"] = json.loads(data["stages"])
        data["config"] = json.loads(data["config"] or "{}")
        return cls(**data)

    def to_row(self) -> dict[str, Any]:
        data = asdict(self)
        data["stages"] = json.dumps(self.stages)
        data["config"] = json.dumps(self.config, sort_keys=True)
        return data


@dataclass(frozen=True)
class ExperimentEvent:
    experiment_id: str
    at: float
    actor: str
    kind: str
    from_status: str | None
    to_status: str
    from_stage: int | None
    to_stage: int | None
    reason: str | None
    metrics: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ExperimentStore:
    """Experiments and events, read and changed through the state database."""

    def __init__(self, db: StateDB) -> None:
        self.db = db

    def create(self, experiment: Experiment, *, actor: str, metrics: dict[str, Any] | None = None) -> Experiment:
        now = time.time()
        experiment.created_at = experiment.updated_at = experiment.stage_started_at = now
        experiment.revision = 1
        try:
            with self.db.begin(write=True) as conn:
                if conn.execute(select(experiments.c.experiment_id).where(
                        experiments.c.experiment_id == experiment.experiment_id)).first() is not None:
                    raise ExperimentError(f"experiment '{experiment.experiment_id}' already exists")
                conn.execute(insert(experiments).values(**experiment.to_row()))
                reason = (f"started in shadow: the candidate also answers {experiment.shadow_share:.0%} of "
                          "requests, unseen" if experiment.status == "shadow"
                          else f"started at {experiment.stage_percent} % candidate traffic")
                self._event(conn, experiment, actor=actor, kind="start", from_status=None, from_stage=None,
                            reason=reason, metrics=metrics, at=now)
        except IntegrityError:
            live = [e.experiment_id for e in self.list(signature=experiment.signature) if e.live]
            raise ExperimentError(
                f"signature '{experiment.signature}' already has a live experiment ({', '.join(live) or '?'}); "
                "promote or roll it back first"
            ) from None
        return experiment

    def get(self, experiment_id: str) -> Experiment:
        with self.db.begin() as conn:
            row = conn.execute(select(experiments).where(experiments.c.experiment_id == experiment_id)).first()
        if row is None:
            known = ", ".join(e.experiment_id for e in self.list()[-10:]) or "none"
            raise UnknownExperimentError(f"no experiment '{experiment_id}' (recent: {known})")
        return Experiment.from_row(row)

    def list(self, *, signature: str | None = None, statuses: tuple[str, ...] | None = None) -> list[Experiment]:
        query = select(experiments).order_by(experiments.c.created_at, experiments.c.experiment_id)
        if signature is not None:
            query = query.where(experiments.c.signature == signature)
        if statuses is not None:
            query = query.where(experiments.c.status.in_(statuses))
        with self.db.begin() as conn:
            return [Experiment.from_row(row) for row in conn.execute(query)]

    def latest_per_signature(self) -> dict[str, Experiment]:
        """The most recent experiment of every signature (what its route follows)."""
        latest: dict[str, Experiment] = {}
        for experiment in self.list():  # oldest first: later ones replace earlier ones...
            current = latest.get(experiment.signature)
            if current is None or not current.live:  # ...unless a live one is already there
                latest[experiment.signature] = experiment
        return latest

    def transition(self, experiment: Experiment, kind: str, *, actor: str, changes: dict[str, Any],
                   reason: str | None, metrics: dict[str, Any] | None = None,
                   also: Callable[[Connection], None] | None = None) -> Experiment:
        """Apply ``changes`` if the experiment is still at the revision read; append the event.

        ``also`` runs in the same transaction (a promotion moves the production pointer there): if it
        raises, nothing of the change happened.
        """
        allowed = TRANSITIONS[kind]
        if experiment.status not in allowed:
            raise IllegalTransitionError(
                f"cannot {kind} experiment '{experiment.experiment_id}': it is {experiment.status} "
                f"(allowed from {', '.join(allowed)})"
            )
        now = time.time()
        updated = Experiment(**{**asdict(experiment), **changes})
        updated.updated_at = now
        updated.revision = experiment.revision + 1
        if updated.status in FINAL:
            updated.ended_at = now
        row = updated.to_row()
        for key in ("experiment_id", "created_at", "lease_owner", "lease_expires_at"):
            row.pop(key)
        with self.db.begin(write=True) as conn:
            result = conn.execute(update(experiments).where(
                experiments.c.experiment_id == experiment.experiment_id,
                experiments.c.revision == experiment.revision).values(**row))
            if result.rowcount != 1:
                raise ConcurrentChangeError(
                    f"experiment '{experiment.experiment_id}' changed meanwhile (revision {experiment.revision}); "
                    "nothing was done — look at its status and try again"
                )
            self._event(conn, updated, actor=actor, kind=kind, from_status=experiment.status,
                        from_stage=experiment.stage_index, reason=reason, metrics=metrics, at=now)
            if also is not None:
                also(conn)
        return updated

    def events(self, experiment_id: str) -> list[ExperimentEvent]:
        query = select(experiment_events).where(experiment_events.c.experiment_id == experiment_id).order_by(
            experiment_events.c.id)
        with self.db.begin() as conn:
            rows = conn.execute(query).all()
        return [ExperimentEvent(experiment_id=r.experiment_id, at=r.at, actor=r.actor, kind=r.kind,
                                from_status=r.from_status, to_status=r.to_status, from_stage=r.from_stage,
                                to_stage=r.to_stage, reason=r.reason,
                                metrics=json.loads(r.metrics) if r.metrics else None) for r in rows]

    def acquire_lease(self, experiment_id: str, owner: str, ttl_s: float) -> bool:
        """Claim the right to act on an experiment for ``ttl_s`` (renewing one's own claim); False if held."""
        now = time.time()
        with self.db.begin(write=True) as conn:
            result = conn.execute(update(experiments).where(
                experiments.c.experiment_id == experiment_id,
                or_(experiments.c.lease_owner.is_(None), experiments.c.lease_owner == owner,
                    experiments.c.lease_expires_at < now),
            ).values(lease_owner=owner, lease_expires_at=now + ttl_s))
            return result.rowcount == 1

    def release_lease(self, experiment_id: str, owner: str) -> None:
        with self.db.begin(write=True) as conn:
            conn.execute(update(experiments).where(experiments.c.experiment_id == experiment_id,
                                                   experiments.c.lease_owner == owner)
                         .values(lease_owner=None, lease_expires_at=None))

    @staticmethod
    def _event(conn: Any, experiment: Experiment, *, actor: str, kind: str, from_status: str | None,
               from_stage: int | None, reason: str | None, metrics: dict[str, Any] | None, at: float) -> None:
        conn.execute(insert(experiment_events).values(
            experiment_id=experiment.experiment_id, at=at, actor=actor, kind=kind, from_status=from_status,
            to_status=experiment.status, from_stage=from_stage, to_stage=experiment.stage_index, reason=reason,
            metrics=json.dumps(metrics, default=str) if metrics is not None else None))
