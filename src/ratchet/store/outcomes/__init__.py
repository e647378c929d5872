"""Per-arm outcome counters: what each program version did, minute by minute.

Every served request adds to the counters of its (signature, version, arm) in rows per epoch minute
(``int(t // 60)``, so time windows have one-minute resolution): requests, errors by type, latency
(sum, sum of squares and a log-spaced histogram, ``histogram``), tokens and cost. The serving path
counts in memory with an ``OutcomeRecorder`` (``recorder``), which adds the totals to the state
database every second with UPSERT increments, so any number of processes and hosts can count into
the same rows and the sums stay exact. Quality comes from feedback scores
(``ratchet.store.feedback``), matched to the arm that served each request through the request index
(``request_index``), so feedback may reach any process, before or after the request's own counters
are flushed. A candidate run in shadow is counted as arm ``shadow``, and whether its answer agreed
with production's in ``shadow_agreement`` (``read_agreement``). A rollout controller and the SLO
checks read it all back with ``read_arm_stats``/``read_totals`` (``stats``): means and standard
deviations from the sums, p50/p95/p99 from the merged histograms.
"""

from ratchet.store.outcomes.histogram import LATENCY_BUCKET_BOUNDS_S, latency_quantile
from ratchet.store.outcomes.recorder import UNKNOWN_ERROR as UNKNOWN_ERROR
from ratchet.store.outcomes.recorder import OutcomeRecorder, RecorderStats
from ratchet.store.outcomes.request_index import IndexedRequest, find_request, lookup_request, prune_request_index
from ratchet.store.outcomes.stats import (
    Agreement,
    ArmStats,
    prune_outcomes,
    read_agreement,
    read_arm_stats,
    read_totals,
)

__all__ = [
    "LATENCY_BUCKET_BOUNDS_S",
    "Agreement",
    "ArmStats",
    "IndexedRequest",
    "OutcomeRecorder",
    "RecorderStats",
    "find_request",
    "latency_quantile",
    "lookup_request",
    "prune_outcomes",
    "prune_request_index",
    "read_agreement",
    "read_arm_stats",
    "read_totals",
]
