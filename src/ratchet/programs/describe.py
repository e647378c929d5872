"""What a signature's program versions are and hold, and how two differ: the answers of ``ratchet programs
versions|show|diff`` and of the console's Programs pages (one implementation for both).

- :func:`list_versions`: the stored versions, oldest first, with the production version marked;
- :func:`show_version`: one version's metadata and, per predictor, its instructions and demos;
- :func:`diff_versions`: per predictor, the instructions' unified diff and the demos added, removed and kept;
- :func:`word_diff`: two texts as runs of kept, inserted and deleted words (for a reader, not a patch).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

import dspy

from ratchet.hashing import canonical_json
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramSpec
from ratchet.programs.versions import BASE_VERSION, ProgramVersion, VersionStore

__all__ = ["VersionListing", "describe_predictors", "diff_predictors", "diff_versions", "list_versions",
           "show_version", "word_diff"]

_WORDS = re.compile(r"\s+|\w+|[^\w\s]")


@dataclass(frozen=True)
class VersionListing:
    """A signature's stored versions (oldest first) and which version is production (``base`` included)."""

    signature: str
    production: str
    versions: list[ProgramVersion]

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "production": self.production,
                "versions": [v.to_dict() | {"production": v.version == self.production} for v in self.versions]}


def list_versions(pointers: ProductionPointers, signature: str) -> VersionListing:
    """The versions of ``signature`` and its production version (from the state database)."""
    return VersionListing(signature=signature, production=pointers.get(signature),
                          versions=pointers.versions.list(signature))


def describe_predictors(module: dspy.Module) -> dict[str, dict[str, Any]]:
    """Per predictor: its instructions and demos as plain dicts."""
    out = {}
    for name, predictor in module.named_predictors():
        demos = [dict(d.items()) if hasattr(d, "items") else dict(d) for d in predictor.demos]
        out[name] = {"instructions": predictor.signature.instructions,
                     "demos": [{k: v for k, v in d.items() if k != "augmented"} for d in demos]}
    return out


def show_version(store: VersionStore, spec: ProgramSpec, version: str) -> dict[str, Any]:
    """``{"metadata": …, "predictors": …}`` of one version (``base``: the registered program as it is)."""
    module = store.load(spec, version)
    meta = store.get(spec.name, version).to_dict() if version != BASE_VERSION else {"version": BASE_VERSION}
    return {"metadata": meta, "predictors": describe_predictors(module)}


def diff_predictors(left: dict[str, dict[str, Any]], right: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per predictor: the instructions' unified diff, and the demos added, removed and kept (in both)."""
    changes = {}
    for name in sorted(set(left) | set(right)):
        a, b = left.get(name, {"instructions": "", "demos": []}), right.get(name, {"instructions": "", "demos": []})
        keys_a = {canonical_json(d) for d in a["demos"]}
        keys_b = {canonical_json(d) for d in b["demos"]}
        changes[name] = {
            "instructions_before": a["instructions"],
            "instructions_after": b["instructions"],
            "instructions_diff": list(difflib.unified_diff(a["instructions"].splitlines(),
                                                           b["instructions"].splitlines(), "before", "after",
                                                           lineterm="")),
            "demos_before": len(a["demos"]),
            "demos_after": len(b["demos"]),
            "demos_added": [d for d in b["demos"] if canonical_json(d) not in keys_a],
            "demos_removed": [d for d in a["demos"] if canonical_json(d) not in keys_b],
            "demos_kept": [d for d in b["demos"] if canonical_json(d) in keys_a],
        }
    return changes


def diff_versions(store: VersionStore, spec: ProgramSpec, v1: str, v2: str) -> dict[str, Any]:
    """What changed from version ``v1`` to ``v2`` of ``spec``: ``{"signature", "from", "to", "predictors"}``."""
    left, right = describe_predictors(store.load(spec, v1)), describe_predictors(store.load(spec, v2))
    return {"signature": spec.name, "from": v1, "to": v2, "predictors": diff_predictors(left, right)}


def word_diff(before: str, after: str) -> list[tuple[str, str]]:
    """``before`` → ``after`` as ``(op, text)`` runs, ``op`` one of ``equal``, ``insert``, ``delete``; the texts
    of the ``equal`` and ``delete`` runs join to ``before``, of the ``equal`` and ``insert`` runs to ``after``."""
    a, b = _WORDS.findall(before), _WORDS.findall(after)
    runs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op in ("equal", "delete", "replace") and i2 > i1:
            runs.append(("equal" if op == "equal" else "delete", "".join(a[i1:i2])))
        if op in ("insert", "replace") and j2 > j1:
            runs.append(("insert", "".join(b[j1:j2])))
    return runs
