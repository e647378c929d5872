"""What live traffic is compared with: the training data of the version in production.

In order, the first that has training examples:

1. ``production``: the production version's ``dataset_version`` (its train split);
2. ``latest_dataset``: the signature's latest dataset version, when production is ``base`` or names
   no dataset (or its dataset cannot be read — the reason is kept in ``notes``);
3. ``bundled``: the program's bundled ``train`` data.

The *held-out* inputs say what "normal" novelty looks like for this data: inputs of the same
source the program was not trained on — the version's test and dev splits, the bundled test
data — or, when there are fewer than :data:`MIN_HELDOUT`, a stable fifth of the train split
(taken out of the train side).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from ratchet.data.datasets import DatasetStore
from ratchet.data.files import read_records
from ratchet.data.records import input_hash
from ratchet.errors import RatchetError
from ratchet.hashing import BUCKETS, stable_bucket
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramSpec
from ratchet.programs.versions import BASE_VERSION, VersionStore

__all__ = ["HOLDOUT_SALT", "MIN_HELDOUT", "Reference", "load_reference", "production_dataset", "production_version"]

MIN_HELDOUT = 20
HOLDOUT_SALT = "ratchet-drift-holdout"
HOLDOUT_SHARE = 0.2


@dataclass
class Reference:
    """One signature's reference: training examples (values: inputs and outputs) and held-out ones."""

    signature: str
    kind: str  # "production", "latest_dataset" or "bundled"
    program_version: str
    dataset_version: str | None
    train: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    heldout_from: str
    notes: list[str] = field(default_factory=list)

    @property
    def description(self) -> str:
        """One line for alerts: which data, and why it was chosen."""
        if self.kind == "production":
            return f"dataset {self.dataset_version} (train split) of production version {self.program_version}"
        if self.kind == "latest_dataset":
            return (f"the latest dataset {self.dataset_version} (train split); production version "
                    f"{self.program_version} has no readable dataset")
        return f"the program's bundled train data; production version {self.program_version} has no dataset"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "description": self.description, "program_version": self.program_version,
                "dataset_version": self.dataset_version, "train_examples": len(self.train),
                "heldout_examples": len(self.heldout), "heldout_from": self.heldout_from, "notes": self.notes}


def load_reference(spec: ProgramSpec, *, pointers: ProductionPointers, datasets: DatasetStore
                   ) -> tuple[Reference | None, list[str]]:
    """The reference of ``spec`` (None when it has no training data anywhere) and why fallbacks were taken."""
    notes: list[str] = []
    production = production_version(spec.name, pointers, notes)
    dataset = production_dataset(spec.name, production, pointers.versions, notes)
    if dataset is not None:
        found = _from_dataset(spec, datasets, dataset, "production", production, notes)
        if found is not None:
            return found, notes
    try:
        latest = datasets.latest_version(spec.name)
    except RatchetError as exc:
        notes.append(f"latest dataset unreadable: {exc}")
        latest = None
    if latest is not None and latest != dataset:
        found = _from_dataset(spec, datasets, latest, "latest_dataset", production, notes)
        if found is not None:
            return found, notes
    elif latest is None:
        notes.append("no dataset versions")
    return _bundled(spec, production, notes), notes


def production_version(signature: str, pointers: ProductionPointers, notes: list[str]) -> str:
    """The production version (``base`` when the pointer cannot be read; ``notes`` says why)."""
    try:
        return pointers.get(signature)
    except (RatchetError, SQLAlchemyError) as exc:
        notes.append(f"production pointer unreadable ({exc}); taken as {BASE_VERSION}")
        return BASE_VERSION


def production_dataset(signature: str, production: str, versions: VersionStore, notes: list[str]) -> str | None:
    """The dataset version ``production`` was trained on (None for ``base`` or when it names none)."""
    if production == BASE_VERSION:
        return None
    try:
        dataset = versions.get(signature, production).dataset_version
    except RatchetError as exc:
        notes.append(f"production version {production} unreadable: {exc}")
        return None
    if not dataset:
        notes.append(f"production version {production} names no dataset version")
    return dataset or None


def _from_dataset(spec: ProgramSpec, datasets: DatasetStore, version: str, kind: str, production: str,
                  notes: list[str]) -> Reference | None:
    try:
        loaded = datasets.load(spec.name, version)
    except RatchetError as exc:
        notes.append(f"dataset {version} unreadable: {exc}")
        return None
    train = [r.values for r in loaded.by_split("train")]
    if not train:
        notes.append(f"dataset {version} has no train split")
        return None
    heldout = [r.values for r in loaded.records if r.split in ("test", "dev")]
    return _with_heldout(spec, Reference(spec.name, kind, production, version, train, heldout,
                                         "the version's test and dev splits", notes))


def _bundled(spec: ProgramSpec, production: str, notes: list[str]) -> Reference | None:
    train = _rows(spec.data.get("train"), notes)
    if not train:
        notes.append("no bundled train data")
        return None
    heldout = _rows(spec.data.get("test"), notes)
    return _with_heldout(spec, Reference(spec.name, "bundled", production, None, train, heldout,
                                         "the bundled test data", notes))


def _rows(path: Path | None, notes: list[str]) -> list[dict[str, Any]]:
    if path is None:
        return []
    try:
        rows, _stats = read_records(path)
    except (RatchetError, OSError) as exc:
        notes.append(f"{path}: {exc}")
        return []
    return rows


def _with_heldout(spec: ProgramSpec, reference: Reference) -> Reference:
    """``reference`` with at least ``MIN_HELDOUT`` held-out examples when it can have them (see the module doc)."""
    if len(reference.heldout) >= MIN_HELDOUT:
        return reference
    names = spec.schema.input_names
    keep, held = [], []
    for values in reference.train:
        point = stable_bucket(HOLDOUT_SALT, input_hash({k: values[k] for k in names if k in values}))
        (held if point < HOLDOUT_SHARE * BUCKETS else keep).append(values)
    if keep and held:
        reference.heldout, reference.train = reference.heldout + held, keep
        reference.heldout_from = f"a stable {HOLDOUT_SHARE:.0%} of the train split (too few held-out examples)"
    return reference
