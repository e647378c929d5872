"""Arm statistics read back from the counter tables: what the rollout controller and the SLO checks judge.

``read_arm_stats`` (one signature's arms over a window) and ``read_totals`` (dashboards) sum the
per-minute rows in one snapshot: means and standard deviations come from the exact sums,
p50/p95/p99 from the merged latency histograms, and quality from feedback scores joined to the
arm that served each request through the request index. ``prune_outcomes`` deletes the rows of
old minutes.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Table, delete, func, select

from ratchet.store.db import StateDB
from ratchet.store.outcomes._columns import COUNTERS
from ratchet.store.outcomes.histogram import latency_quantile
from ratchet.store.tables import (
    arm_errors,
    arm_latency_buckets,
    arm_outcomes,
    feedback,
    request_index,
    shadow_agreement,
)

__all__ = ["Agreement", "ArmStats", "prune_outcomes", "read_agreement", "read_arm_stats", "read_totals"]

_INT_COUNTERS = frozenset({"requests", "errors", "tokens_in", "tokens_out"})


@dataclass(frozen=True)
class ArmStats:
    """Totals of one arm over a time window, and what follows from them.

    Means and (sample) standard deviations come from exact sums; percentiles are
    estimated from the latency histogram, interpolated geometrically within a bucket
    (at most one bucket, ~26 %, off; usually far less). With no requests, the latency
    figures and rates are 0; with no feedback scores, ``quality_mean``/``quality_std`` are None.
    Quality counts feedback on the window's requests (by request time), whenever it arrived.
    """

    requests: int = 0
    errors: int = 0
    errors_by_type: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    latency_mean_s: float = 0.0
    latency_std_s: float = 0.0
    latency_p50_s: float = 0.0
    latency_p95_s: float = 0.0
    latency_p99_s: float = 0.0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    quality_count: int = 0
    quality_mean: float | None = None
    quality_std: float | None = None
    latency_buckets: dict[int, int] = field(default_factory=dict, repr=False)

    @property
    def success_rate(self) -> float:
        return 1.0 - self.error_rate if self.requests else 0.0


def read_arm_stats(
    db: StateDB,
    signature: str,
    *,
    since: float | None = None,
    until: float | None = None,
    versions: Iterable[str] | None = None,
    experiment_id: str | None = None,
    feedback_per_key: int | None = None,
) -> dict[tuple[str, str], ArmStats]:
    """Each (version, arm) of ``signature`` over ``[since, until)`` (epoch seconds, widened to whole minutes).

    With ``experiment_id`` only the requests served within that experiment count (quality too: feedback
    on requests served since ``since``); without it, every request of the window. With
    ``feedback_per_key``, quality counts at most that many feedback rows per sender on each arm (the earliest).
    """
    totals = _read(db, signature=signature, since=since, until=until, versions=versions, experiment_id=experiment_id,
                   feedback_per_key=feedback_per_key)
    return {(version, arm): stats for (_sig, version, arm), stats in totals.items()}


@dataclass(frozen=True)
class Agreement:
    """How often a candidate run in shadow answered what production answered (calls where both answered)."""

    compared: int = 0
    agreed: int = 0

    @property
    def rate(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


def read_agreement(db: StateDB, signature: str, version: str, experiment_id: str) -> Agreement:
    """The shadow agreement of candidate ``version`` within ``experiment_id``."""
    a = shadow_agreement.c
    query = select(func.sum(a.compared), func.sum(a.agreed)).where(
        a.signature == signature, a.version == version, a.experiment_id == experiment_id)
    with db.begin() as conn:
        compared, agreed = conn.execute(query).one()
    return Agreement(int(compared or 0), int(agreed or 0))


def read_totals(
    db: StateDB, signature: str | None = None, since: float | None = None
) -> dict[tuple[str, str, str], ArmStats]:
    """Every (signature, version, arm), or those of one signature, since ``since`` (for dashboards)."""
    return _read(db, signature=signature, since=since, until=None, versions=None, experiment_id=None)


def prune_outcomes(db: StateDB, older_than: float) -> int:
    """Delete counter rows of minutes that ended before ``older_than``; returns how many rows."""
    cutoff = math.floor(older_than / 60)
    deleted = 0
    with db.begin(write=True) as conn:
        for table in (arm_outcomes, arm_errors, arm_latency_buckets, shadow_agreement):
            deleted += conn.execute(delete(table).where(table.c.minute < cutoff)).rowcount
    return deleted


class _Sums:
    __slots__ = ("buckets", "counters", "errors", "quality")

    def __init__(self) -> None:
        self.counters: dict[str, float] = dict.fromkeys(COUNTERS, 0)
        self.errors: dict[str, int] = {}
        self.buckets: dict[int, int] = {}
        self.quality: tuple[int, float, float] = (0, 0.0, 0.0)  # count, sum, sum of squares

    def stats(self) -> ArmStats:
        c = self.counters
        requests = int(c["requests"])
        quality_count, quality_sum, quality_sumsq = self.quality
        latency_mean, latency_std = _mean_std(requests, c["latency_sum_s"], c["latency_sumsq"])
        quality_mean, quality_std = _mean_std(quality_count, quality_sum, quality_sumsq)
        return ArmStats(
            requests=requests,
            errors=int(c["errors"]),
            errors_by_type=dict(sorted(self.errors.items(), key=lambda item: (-item[1], item[0]))),
            error_rate=c["errors"] / requests if requests else 0.0,
            latency_mean_s=latency_mean or 0.0,
            latency_std_s=latency_std or 0.0,
            latency_p50_s=latency_quantile(self.buckets, 0.50),
            latency_p95_s=latency_quantile(self.buckets, 0.95),
            latency_p99_s=latency_quantile(self.buckets, 0.99),
            tokens_in=int(c["tokens_in"]),
            tokens_out=int(c["tokens_out"]),
            cost_usd=float(c["cost_usd"]),
            quality_count=quality_count,
            quality_mean=quality_mean,
            quality_std=quality_std,
            latency_buckets=dict(sorted(self.buckets.items())),
        )


def _mean_std(n: int, total: float, total_sq: float) -> tuple[float | None, float | None]:
    if n <= 0:
        return None, None
    mean = total / n
    variance = (total_sq - total * total / n) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(max(variance, 0.0))


def _read(
    db: StateDB,
    *,
    signature: str | None,
    since: float | None,
    until: float | None,
    versions: Iterable[str] | None,
    experiment_id: str | None,
    feedback_per_key: int | None = None,
) -> dict[tuple[str, str, str], ArmStats]:
    version_list = None if versions is None else [str(v) for v in versions]
    sums: dict[tuple[str, str, str], _Sums] = {}

    def where(table: Table) -> list[ColumnElement[bool]]:
        conditions = []
        if signature is not None:
            conditions.append(table.c.signature == signature)
        if version_list is not None:
            conditions.append(table.c.version.in_(version_list))
        if experiment_id is not None:
            conditions.append(table.c.experiment_id == experiment_id)
        if since is not None:
            conditions.append(table.c.minute >= math.floor(since / 60))
        if until is not None:
            conditions.append(table.c.minute < math.ceil(until / 60))
        return conditions

    def grouped(table: Table, extra: list[Any], values: list[Any]) -> Any:
        keys = [table.c.signature, table.c.version, table.c.arm, *extra]
        return select(*keys, *values).where(*where(table)).group_by(*keys)

    o = arm_outcomes.c
    with db.begin(snapshot=True) as conn:
        for row in conn.execute(grouped(arm_outcomes, [], [func.sum(o[name]) for name in COUNTERS])):
            counters = sums.setdefault((row[0], row[1], row[2]), _Sums()).counters
            for name, value in zip(COUNTERS, row[3:], strict=True):
                counters[name] = (int if name in _INT_COUNTERS else float)(value or 0)
        errors = grouped(arm_errors, [arm_errors.c.error_type], [func.sum(arm_errors.c.count)])
        for sig, version, arm, error_type, count in conn.execute(errors):
            sums.setdefault((sig, version, arm), _Sums()).errors[error_type] = int(count)
        buckets = grouped(arm_latency_buckets, [arm_latency_buckets.c.bucket], [func.sum(arm_latency_buckets.c.count)])
        for sig, version, arm, bucket, count in conn.execute(buckets):
            sums.setdefault((sig, version, arm), _Sums()).buckets[int(bucket)] = int(count)
        for sig, version, arm, n, total, total_sq in conn.execute(
                _quality_query(signature, since, until, version_list, feedback_per_key)):
            sums.setdefault((sig, version, arm), _Sums()).quality = (int(n), float(total or 0), float(total_sq or 0))
    return {key: value.stats() for key, value in sorted(sums.items())}


def _quality_query(signature: str | None, since: float | None, until: float | None,
                   versions: list[str] | None, per_key: int | None = None) -> Any:
    """Feedback scores per (signature, version, arm), joined to the arm that served each request; with
    ``per_key``, each sender's first ``per_key`` rows per arm only."""
    ri, fb = request_index.c, feedback.c
    keys = [ri.signature, ri.version, ri.arm]
    conditions = []
    if signature is not None:
        conditions.append(ri.signature == signature)
    if versions is not None:
        conditions.append(ri.version.in_(versions))
    if since is not None:
        conditions.append(ri.created_at >= since)
    if until is not None:
        conditions.append(ri.created_at < until)
    joined = feedback.join(request_index, fb.request_id == ri.request_id)
    if per_key is None:
        return (select(*keys, func.count(fb.score), func.sum(fb.score), func.sum(fb.score * fb.score))
                .select_from(joined).where(*conditions).group_by(*keys))
    rank = func.row_number().over(partition_by=[*keys, fb.principal], order_by=[fb.created_at, fb.request_id])
    ranked = select(*keys, fb.score.label("score"), rank.label("rank")).select_from(joined).where(*conditions)
    ranked_sub = ranked.subquery()
    r = ranked_sub.c
    return (select(r.signature, r.version, r.arm, func.count(r.score), func.sum(r.score), func.sum(r.score * r.score))
            .where(r.rank <= per_key).group_by(r.signature, r.version, r.arm))
