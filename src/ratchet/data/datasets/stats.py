"""The ``statistics`` block of a version's metadata: quality scores and counts by difficulty, source, category.

Computed once when a version is written; ``list``, ``diff``, the dashboard and the
dataset-quality check read it back from ``metadata.json`` without loading the examples.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from ratchet.data.records import DIFFICULTIES, ExampleRecord

__all__ = ["dataset_statistics"]


def dataset_statistics(records: Sequence[ExampleRecord]) -> dict[str, Any]:
    """``quality_scores`` {mean, min, p10 (nearest rank), max, count} and counts by ``difficulty``, ``sources``
    and ``categories`` — the ``statistics`` of a version's metadata."""
    scores = sorted(r.quality for r in records if r.quality is not None)
    quality: dict[str, Any] = {"mean": None, "min": None, "p10": None, "max": None, "count": len(scores)}
    if scores:
        quality.update(mean=round(sum(scores) / len(scores), 2), min=scores[0],
                       p10=scores[max(0, math.ceil(0.1 * len(scores)) - 1)], max=scores[-1])
    difficulty = dict.fromkeys(DIFFICULTIES, 0)
    for record in records:
        if record.difficulty in difficulty:
            difficulty[record.difficulty] += 1
    return {
        "quality_scores": quality,
        "difficulty": difficulty,
        "sources": dict(sorted(Counter(r.source for r in records).items())),
        "categories": dict(sorted(Counter(r.category for r in records if r.category is not None).items())),
    }
