"""Canary runs in the state database: every version scored on a signature's probe set, with each probe's score.

Rows are only ever added (one per version per pass) and pruned by age. Readers pair runs on
the same probes: :func:`latest_pass` (a baseline and a candidate scored in the same pass) for
the rollout trigger, :func:`canary_history` (one version over time) for the degradation signal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, insert, select

from ratchet.store.db import StateDB
from ratchet.store.tables import NAME_LEN, canary_runs, clean

__all__ = ["CanaryRun", "canary_history", "last_canary_runs", "latest_pass", "prune_canary_runs",
           "record_canary_runs"]

_PASS_SCAN = 200
"""Rows :func:`latest_pass` reads back in time looking for a pass that scored both versions."""


@dataclass(frozen=True)
class CanaryRun:
    """One version scored on one probe set."""

    signature: str
    version: str
    at: float
    probe_set: str
    n: int
    score: float
    errors: int = 0
    parse_failures: int = 0
    seconds: float = 0.0
    scores: dict[str, float] = field(default_factory=dict)
    pass_id: str = ""

    def to_dict(self, *, with_scores: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {"signature": self.signature, "version": self.version, "at": self.at,
                               "pass_id": self.pass_id, "probe_set": self.probe_set, "n": self.n,
                               "score": round(self.score, 4), "errors": self.errors,
                               "parse_failures": self.parse_failures, "seconds": round(self.seconds, 3)}
        if with_scores:
            out["scores"] = self.scores
        return out


def record_canary_runs(db: StateDB, runs: Iterable[CanaryRun]) -> None:
    """Store runs (one transaction)."""
    rows = [{"pass_id": clean(r.pass_id, 64), "signature": clean(r.signature, NAME_LEN),
             "version": clean(r.version, NAME_LEN), "at": float(r.at), "probe_set": clean(r.probe_set, 64),
             "n": int(r.n), "score": float(r.score), "errors": int(r.errors),
             "parse_failures": int(r.parse_failures), "seconds": float(r.seconds),
             "scores": json.dumps(r.scores, separators=(",", ":"))} for r in runs]
    if rows:
        with db.begin(write=True) as conn:
            conn.execute(insert(canary_runs), rows)


def _run(row: Any) -> CanaryRun:
    try:
        scores = {str(k): float(v) for k, v in json.loads(row.scores).items()}
    except (ValueError, TypeError, AttributeError):  # a damaged row still shows its mean; it just cannot be paired
        scores = {}
    return CanaryRun(signature=row.signature, version=row.version, at=row.at, probe_set=row.probe_set, n=row.n,
                     score=row.score, errors=row.errors, parse_failures=row.parse_failures, seconds=row.seconds,
                     scores=scores, pass_id=row.pass_id)


def last_canary_runs(db: StateDB, signature: str | None = None) -> dict[tuple[str, str], CanaryRun]:
    """The newest run of every (signature, version) — of one signature when given."""
    newest = select(canary_runs.c.signature, canary_runs.c.version, func.max(canary_runs.c.id).label("id")).group_by(
        canary_runs.c.signature, canary_runs.c.version)
    if signature is not None:
        newest = newest.where(canary_runs.c.signature == clean(signature, NAME_LEN))
    ids = newest.subquery()
    query = select(canary_runs).join(ids, canary_runs.c.id == ids.c.id)
    with db.begin() as conn:
        return {(row.signature, row.version): _run(row) for row in conn.execute(query)}


def canary_history(db: StateDB, signature: str, version: str | None, *, limit: int, probe_set: str | None = None
                   ) -> list[CanaryRun]:
    """The newest ``limit`` runs of one version (of every version when None; on one probe set when given),
    newest first."""
    query = select(canary_runs).where(canary_runs.c.signature == clean(signature, NAME_LEN))
    if version is not None:
        query = query.where(canary_runs.c.version == clean(version, NAME_LEN))
    if probe_set is not None:
        query = query.where(canary_runs.c.probe_set == probe_set)
    with db.begin() as conn:
        return [_run(row) for row in conn.execute(query.order_by(canary_runs.c.id.desc()).limit(limit))]


def latest_pass(db: StateDB, signature: str, baseline: str, candidate: str, *, since: float = 0.0
                ) -> tuple[CanaryRun, CanaryRun] | None:
    """The newest pass (since ``since``) that scored both versions on the same probes: (baseline, candidate)."""
    query = select(canary_runs).where(
        canary_runs.c.signature == clean(signature, NAME_LEN),
        canary_runs.c.version.in_([clean(baseline, NAME_LEN), clean(candidate, NAME_LEN)]),
        canary_runs.c.at >= since).order_by(canary_runs.c.id.desc()).limit(_PASS_SCAN)
    with db.begin() as conn:
        rows = [_run(row) for row in conn.execute(query)]
    passes: dict[str, dict[str, CanaryRun]] = {}
    for run in rows:  # newest first: the first complete pass is the latest
        seen = passes.setdefault(run.pass_id, {})
        seen.setdefault(run.version, run)
        if len(seen) == 2 and seen[baseline].probe_set == seen[candidate].probe_set:
            return seen[baseline], seen[candidate]
    return None


def prune_canary_runs(db: StateDB, older_than: float) -> int:
    """Delete runs finished before ``older_than`` (epoch seconds); returns how many."""
    with db.begin(write=True) as conn:
        return conn.execute(delete(canary_runs).where(canary_runs.c.at < older_than)).rowcount
