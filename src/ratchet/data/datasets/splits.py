"""Which split (``train``/``dev``/``test``) an example belongs to.

The split comes from a stable hash of the example's inputs against the configured
cumulative ratios, so an input keeps its split in every version (and an input in
``test`` never leaks into ``train``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ratchet.data.records import input_hash
from ratchet.hashing import BUCKETS, stable_bucket

__all__ = ["SPLITS", "SPLIT_SALT", "assign_split"]

SPLITS = ("train", "dev", "test")
SPLIT_SALT = "ratchet-split"


def assign_split(inputs: Mapping[str, Any], ratios: Mapping[str, float]) -> str:
    """``train``/``dev``/``test`` from a stable hash of the inputs against the cumulative ratios."""
    point = stable_bucket(SPLIT_SALT, input_hash(inputs)) / BUCKETS
    cumulative = 0.0
    for name in SPLITS:
        cumulative += ratios.get(name, 0.0)
        if point < cumulative:
            return name
    return SPLITS[-1]
