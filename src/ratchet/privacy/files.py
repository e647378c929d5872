"""A user's examples in the home's files: dataset and golden versions, program versions' demos, canary probes, run
files.

Dataset examples are found by the request id or pseudonym their provenance records
(:mod:`ratchet.data.datasets.purge` rewrites the versions). A demo is the user's when it holds
all the input fields of one of the user's calls (from telemetry) or of one of their removed
examples (its input fields when the program is registered, else all of its fields); so is a canary
probe row (probe sets are sampled from dataset test splits and keep only the signature's fields). Run files
(``runs/**.jsonl``: collected, validated and gated batches of a cycle) are rewritten atomically
without the user's examples, keeping their mode.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ratchet.config import Settings
from ratchet.data.datasets.purge import ExampleMatch, SignaturePurge, purge_signature
from ratchet.programs import load_programs
from ratchet.programs.registry import NAME_PATTERN
from ratchet.programs.versions import VersionStore
from ratchet.store.atomic import atomic_write_bytes
from ratchet.store.db import StateDB

__all__ = ["purge_datasets", "purge_demos", "purge_probe_files", "purge_run_files"]

log = logging.getLogger(__name__)


def purge_datasets(home: Path, match: ExampleMatch, *, edit: Mapping[str, Any]) -> list[SignaturePurge]:
    """Remove matching examples from every signature's dataset versions under ``<home>/training_data`` and its
    golden versions under ``<home>/golden`` (same layout; golden examples record the request they label)."""
    results = []
    for store in ("training_data", "golden"):
        root = Path(home) / store
        if not root.is_dir():
            continue
        for sig_dir in sorted(root.iterdir()):
            if sig_dir.is_dir() and NAME_PATTERN.match(sig_dir.name):
                result = purge_signature(sig_dir, sig_dir.name, match, edit=edit)
                result.store = store
                results.append(result)
    return results


def purge_demos(settings: Settings, call_inputs: Sequence[Mapping[str, Any]],
                removed_examples: Sequence[Mapping[str, Any]], *, edit: dict[str, Any],
                db: StateDB | None = None) -> tuple[int, list[str]]:
    """Remove the user's demos from every stored program version — here and, with a shared (PostgreSQL) ``db``, in
    the database, whose changed fingerprints every serving host follows; returns (demos removed, ``sig/version``
    changed)."""
    root = Path(settings.home_dir) / "programs"
    store = VersionStore(settings.home_dir, db)
    names = {p.name for p in root.iterdir() if p.is_dir()} if root.is_dir() else set()
    if store.rows is not None:
        names |= store.rows.signatures()
    if not names or not (call_inputs or removed_examples):
        return 0, []
    keys = _UserKeys(settings, call_inputs, removed_examples)
    removed, changed = 0, []
    for name in sorted(n for n in names if NAME_PATTERN.match(n)):
        mine = keys.matcher(name)
        if mine is None:
            continue
        for version in store.list(name):
            count = store.remove_demos(name, version.version, mine, edit=edit)
            if count:
                removed += count
                changed.append(f"{name}/{version.version}")
    return removed, changed


def purge_probe_files(settings: Settings, call_inputs: Sequence[Mapping[str, Any]],
                      removed_examples: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Remove the user's rows from the sampled canary probe sets (``<home>/canaries/<signature>.jsonl``, drawn from
    dataset test splits); returns file → rows removed. The set's fingerprint changes: its run history starts anew."""
    root = Path(settings.home_dir) / "canaries"
    if not root.is_dir() or not (call_inputs or removed_examples):
        return {}
    keys = _UserKeys(settings, call_inputs, removed_examples)
    changed: dict[str, int] = {}
    for path in sorted(root.glob("*.jsonl")):
        mine = keys.matcher(path.stem)
        if mine is not None and (count := _rewrite_jsonl(path, lambda item, mine=mine: mine(item))):
            changed[path.name] = count
    return changed


class _UserKeys:
    """The field values that identify the user's examples: the inputs of their calls, and their removed examples
    (only the input fields when the program is registered, else every field)."""

    def __init__(self, settings: Settings, call_inputs: Sequence[Mapping[str, Any]],
                 removed_examples: Sequence[Mapping[str, Any]]) -> None:
        self.input_names = _input_names(settings)
        self.call_inputs = [dict(i) for i in call_inputs if i]
        self.removed_examples = removed_examples

    def matcher(self, signature: str) -> Callable[[Mapping[str, Any]], bool] | None:
        """Whether a demo or probe row of ``signature`` holds all the fields of one of the user's keys (None:
        the user has none)."""
        names = self.input_names.get(signature)
        keys = self.call_inputs + [{k: v for k, v in e.items() if names is None or k in names}
                                   for e in self.removed_examples]
        keys = [k for k in keys if k]
        if not keys:
            return None

        def mine(row: Mapping[str, Any]) -> bool:
            return any(all(k in row and row[k] == v for k, v in key.items()) for key in keys)

        return mine


def purge_run_files(runs_dir: Path, match: ExampleMatch) -> dict[str, int]:
    """Rewrite every ``*.jsonl`` under ``runs_dir`` without the matching examples; returns file → lines removed."""
    changed: dict[str, int] = {}
    if not runs_dir.is_dir():
        return changed
    for path in sorted(runs_dir.rglob("*.jsonl")):
        if path.is_file() and not path.is_symlink() and (count := _rewrite_jsonl(path, match)):
            changed[str(path.relative_to(runs_dir))] = count
    return changed


def _rewrite_jsonl(path: Path, match: Callable[[Mapping[str, Any]], bool]) -> int:
    """Rewrite ``path`` (atomically, same mode) without the JSON-object lines ``match`` selects; returns how many."""
    lines = path.read_bytes().splitlines(keepends=True)
    kept = [line for line in lines if not _matches(line, match)]
    if len(kept) < len(lines):
        atomic_write_bytes(path, b"".join(kept), mode=os.stat(path).st_mode & 0o777)
    return len(lines) - len(kept)


def _matches(line: bytes, match: Callable[[Mapping[str, Any]], bool]) -> bool:
    try:
        item = json.loads(line)
    except ValueError:
        return False
    return isinstance(item, dict) and match(item)


def _input_names(settings: Settings) -> dict[str, set[str]]:
    """Each registered signature's input field names (empty when the programs cannot be loaded)."""
    try:
        return {spec.name: set(spec.schema.input_names) for spec in load_programs(settings)}
    except Exception as exc:  # a user's program module that fails to import must not stop a deletion
        log.warning("programs could not be loaded (%s): demos are matched on every field of the removed examples",
                    exc)
        return {}
