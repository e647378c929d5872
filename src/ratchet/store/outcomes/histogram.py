"""The latency histogram: fixed log-spaced bucket bounds, and quantiles read back from bucket counts.

The recorder counts each request's latency in bucket ``bisect_left(LATENCY_BUCKET_BOUNDS_S, latency)``
and stores the bucket index, per arm and minute; readers merge those counts over a window and
estimate percentiles with ``latency_quantile``, interpolating geometrically within a bucket.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["LATENCY_BUCKET_BOUNDS_S", "latency_quantile"]

LATENCY_BUCKET_BOUNDS_S: tuple[float, ...] = tuple(10.0 ** (i / 10 - 3) for i in range(59))
"""Upper bounds of the latency histogram: 10 per decade from 1 ms to 631 s (10^-3 … 10^2.8).

Bucket ``i`` counts latencies in ``(bound[i-1], bound[i]]`` (bucket 0 from 0 s, bucket
59 everything above 631 s). Stored rows hold the bucket index: never change these bounds.
"""

_OVERFLOW_BUCKET = len(LATENCY_BUCKET_BOUNDS_S)


def latency_quantile(buckets: Mapping[int, int], q: float) -> float:
    """The ``q`` quantile (0–1) of a latency histogram keyed by bucket index; 0.0 when it is empty."""
    total = sum(buckets.values())
    if total <= 0:
        return 0.0
    rank = min(max(q, 0.0), 1.0) * total
    seen = 0
    last = 0
    for bucket in sorted(buckets):
        count = buckets[bucket]
        if count <= 0:
            continue
        last = bucket
        if seen + count >= rank:
            return _within(bucket, (rank - seen) / count)
        seen += count
    return _within(last, 1.0)


def _within(bucket: int, fraction: float) -> float:
    if bucket <= 0:
        return LATENCY_BUCKET_BOUNDS_S[0] * fraction
    if bucket >= _OVERFLOW_BUCKET:
        return LATENCY_BUCKET_BOUNDS_S[-1]
    low, high = LATENCY_BUCKET_BOUNDS_S[bucket - 1], LATENCY_BUCKET_BOUNDS_S[bucket]
    return low * (high / low) ** fraction
