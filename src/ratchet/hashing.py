"""Stable hashing for sampling, bucketing, dedup and fingerprints.

Never Python's ``hash()``: it is salted per process. Everything here is a pure
function of its arguments, identical across processes, hosts and versions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["BUCKETS", "canonical_json", "sha256_hex", "stable_bucket"]

BUCKETS = 10_000


def sha256_hex(text: str | bytes) -> str:
    """Hex SHA-256 of text (UTF-8) or bytes."""
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def stable_bucket(salt: str, key: str, buckets: int = BUCKETS) -> int:
    """A bucket in ``[0, buckets)`` for ``salt:key``: uniform, stable, monotone under threshold rules.

    ``bucket < share * buckets`` selects a share of keys; raising the share only adds keys.
    """
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % buckets


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: equal values give equal strings (and hashes)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
