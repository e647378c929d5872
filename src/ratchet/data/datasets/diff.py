"""How one version of a signature differs from another: ids added, removed and changed, and shifted distributions.

Computed from two loaded versions: example ids and values, plus the counts, quality
mean, difficulty, source, category and split distributions their metadata recorded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ratchet.data.datasets.results import DatasetVersion

__all__ = ["DatasetDiff", "diff_versions"]


@dataclass
class DatasetDiff:
    """How version ``new`` differs from version ``old`` of a signature."""

    signature: str
    old: str
    new: str
    added: list[str]
    removed: list[str]
    changed: list[str]
    counts: dict[str, int]
    quality_mean: dict[str, float | None]
    distributions: dict[str, dict[str, dict[str, int]]]
    examples_added: list[dict[str, Any]] = field(default_factory=list)
    examples_removed: list[dict[str, Any]] = field(default_factory=list)
    examples_changed: list[dict[str, Any]] = field(default_factory=list)  # {"id", "old", "new"} of a sample

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "old": self.old, "new": self.new, "counts": self.counts,
                "quality_mean": self.quality_mean, "distributions": self.distributions,
                "added": self.added, "removed": self.removed, "changed": self.changed,
                "examples_added": self.examples_added, "examples_removed": self.examples_removed,
                "examples_changed": self.examples_changed}


def diff_versions(signature: str, old: DatasetVersion, new: DatasetVersion, *, sample: int = 5) -> DatasetDiff:
    """Ids added/removed/changed from ``old`` to ``new``, count, quality and distribution changes."""
    old_by_id = {r.id: r for r in old.records}
    new_by_id = {r.id: r for r in new.records}
    added = [i for i in new_by_id if i not in old_by_id]
    removed = [i for i in old_by_id if i not in new_by_id]
    changed = [i for i in new_by_id if i in old_by_id and new_by_id[i].values != old_by_id[i].values]
    old_stats, new_stats = old.metadata.get("statistics", {}), new.metadata.get("statistics", {})
    q_old = old_stats.get("quality_scores", {}).get("mean")
    q_new = new_stats.get("quality_scores", {}).get("mean")
    distributions = {key: _compare(old_stats.get(key, {}), new_stats.get(key, {}))
                     for key in ("difficulty", "sources", "categories")}
    distributions["splits"] = _compare(old.metadata.get("split_counts", {}), new.metadata.get("split_counts", {}))
    return DatasetDiff(
        signature=signature, old=old.version, new=new.version, added=added, removed=removed, changed=changed,
        counts={"old": len(old.records), "new": len(new.records), "added": len(added), "removed": len(removed),
                "changed": len(changed), "common": len(new_by_id) - len(added)},
        quality_mean={"old": q_old, "new": q_new,
                      "change": None if q_old is None or q_new is None else round(q_new - q_old, 2)},
        distributions=distributions,
        examples_added=[new_by_id[i].to_json() for i in added[:sample]],
        examples_removed=[old_by_id[i].to_json() for i in removed[:sample]],
        examples_changed=[{"id": i, "old": old_by_id[i].to_json(), "new": new_by_id[i].to_json()}
                          for i in changed[:sample]],
    )


def _compare(old: Mapping[str, int], new: Mapping[str, int]) -> dict[str, dict[str, int]]:
    return {key: {"old": int(old.get(key, 0)), "new": int(new.get(key, 0)),
                  "change": int(new.get(key, 0)) - int(old.get(key, 0))}
            for key in sorted(set(old) | set(new))}
