"""A signature's probe set: fixed labelled examples that every canary run scores, so runs compare probe by probe.

Where the probes come from:

1. your own file, when ``monitor.canary.probe_files`` names one for the signature (or ``ratchet
   canary run --probes FILE``): labelled examples (.jsonl/.json/.csv), read at every run;
2. otherwise ``<home>/canaries/<signature>.jsonl``, written once (owner-only, atomically) from a
   seeded sample of ``monitor.canary.probes`` examples of the first source that has any:

   a. ``production``: the test split of the dataset version the production version was trained on;
   b. ``latest_dataset``: the test split of the signature's latest dataset version;
   c. ``bundled``: the program's bundled test data.

   It never changes after that (a new dataset does not move it): only ``regenerate=True``
   (``ratchet canary probes --regenerate``) samples it again. ``<signature>.meta.json`` next to
   it records where it came from.

A probe's id is its example id (signature and inputs); the set's fingerprint hashes every probe's
id and values. Runs pair only on the same fingerprint, so editing or regenerating the file starts
a new history. Bad lines are skipped and counted; a file without one usable probe is an error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy

from ratchet.config.settings import CanarySettings
from ratchet.data.datasets import DatasetStore
from ratchet.data.files import load_examples, read_records
from ratchet.data.records import example_id
from ratchet.data.sampling import seeded_sample
from ratchet.errors import DataError, RatchetError
from ratchet.hashing import canonical_json, sha256_hex
from ratchet.monitor.drift.reference import production_dataset, production_version
from ratchet.programs.production import ProductionPointers
from ratchet.programs.registry import ProgramSpec
from ratchet.store.atomic import atomic_write_json, atomic_write_text
from ratchet.store.private import make_private_dir

__all__ = ["PROBES_DIRNAME", "ProbeSet", "ensure_probes", "load_probe_file", "probe_path", "sample_probes"]

PROBES_DIRNAME = "canaries"


@dataclass
class ProbeSet:
    """The probes of one signature, as examples with their ids, and where they came from."""

    signature: str
    path: Path
    source: str  # "file" (yours), "production", "latest_dataset", "bundled", or "none" (no examples: nothing to run)
    description: str
    examples: list[dspy.Example]
    ids: list[str]
    fingerprint: str
    skipped: int = 0
    errors: list[str] = field(default_factory=list)
    created: bool = False  # this call sampled and wrote the file

    def __len__(self) -> int:
        return len(self.examples)

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "path": str(self.path), "source": self.source,
                "description": self.description, "probes": len(self.examples), "fingerprint": self.fingerprint,
                "skipped_lines": self.skipped, "errors": self.errors[:5], "created": self.created}


def probe_path(home: Path, signature: str) -> Path:
    """Where the sampled probe set of ``signature`` is kept."""
    return Path(home) / PROBES_DIRNAME / f"{signature}.jsonl"


def _meta_path(path: Path) -> Path:
    return path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")


def load_probe_file(spec: ProgramSpec, path: Path, *, source: str = "file", description: str | None = None
                    ) -> ProbeSet:
    """The probes in ``path`` (bad lines and repeated inputs skipped and counted); :class:`DataError` when none."""
    loaded = load_examples(path, spec.schema)
    examples, ids, errors, skipped = [], [], list(loaded.errors), loaded.skipped
    seen: set[str] = set()
    for example in loaded.examples:
        probe = example_id(spec.name, example.inputs().toDict())
        if probe in seen:
            skipped += 1
            if len(errors) < 20:
                errors.append(f"{Path(path).name}: probe {probe} repeats an earlier input (skipped)")
            continue
        seen.add(probe)
        examples.append(example)
        ids.append(probe)
    if not examples:
        reasons = "; ".join(errors[:3]) or "the file is empty"
        raise DataError(f"{path}: no usable canary probes for '{spec.name}' ({skipped} skipped: {reasons}); each "
                        f"line needs the inputs {list(spec.schema.input_names)} and the outputs "
                        f"{list(spec.schema.output_names)}")
    fingerprint = sha256_hex(canonical_json(sorted(
        [probe, dict(example.items())] for probe, example in zip(ids, examples, strict=True))))[:16]
    return ProbeSet(spec.name, Path(path), source, description or f"your probe file {path}", examples, ids,
                    fingerprint, skipped, errors)


def sample_probes(spec: ProgramSpec, canary: CanarySettings, *, pointers: ProductionPointers,
                  datasets: DatasetStore) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """A seeded sample of labelled rows from the first source that has any, and a description of it (no rows,
    source ``"none"``, when there is no source)."""
    notes: list[str] = []
    production = production_version(spec.name, pointers, notes)
    dataset = production_dataset(spec.name, production, pointers.versions, notes)
    try:
        latest = datasets.latest_version(spec.name)
    except RatchetError as exc:
        notes.append(f"latest dataset unreadable: {exc}")
        latest = None
    candidates = [("production", dataset, f"the test split of dataset {dataset}, which production version "
                                          f"{production} was trained on"),
                  ("latest_dataset", latest if latest != dataset else None,
                   f"the test split of the latest dataset {latest}")]
    for kind, version, description in candidates:
        if version is None:
            continue
        try:
            rows = [record.values for record in datasets.load(spec.name, version).by_split("test")]
        except RatchetError as exc:
            notes.append(f"dataset {version} unreadable: {exc}")
            continue
        if rows:
            return _sample(spec, rows, canary), {"source": kind, "description": description,
                                                 "dataset_version": version, "notes": notes}
        notes.append(f"dataset {version} has no test split")
    bundled = spec.data.get("test")
    if bundled is None:
        return [], {"source": "none", "notes": notes, "description": (
            f"no dataset test split and no bundled test data ({'; '.join(notes) or 'no dataset versions'}): "
            "give your own probes with monitor.canary.probe_files or --probes FILE")}
    rows, _stats = read_records(bundled)
    return _sample(spec, rows, canary), {"source": "bundled", "description": f"the program's bundled test data "
                                         f"({bundled.name})", "dataset_version": None, "notes": notes}


def _sample(spec: ProgramSpec, rows: list[dict[str, Any]], canary: CanarySettings) -> list[dict[str, Any]]:
    """Only the signature's fields, one row per input, in a seeded order independent of the rows' order."""
    names = [*spec.schema.input_names, *spec.schema.output_names]
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        values = {name: row[name] for name in names if name in row}
        inputs = {name: values[name] for name in spec.schema.input_names if name in values}
        unique.setdefault(example_id(spec.name, inputs), values)
    return seeded_sample([unique[key] for key in sorted(unique)], canary.probes, canary.seed)


def ensure_probes(spec: ProgramSpec, home: Path, canary: CanarySettings, *, pointers: ProductionPointers,
                  datasets: DatasetStore, regenerate: bool = False, path: Path | None = None) -> ProbeSet:
    """The signature's probe set: ``path`` (yours) if given, else the stored sample, sampled first if missing
    (an empty set, source ``"none"``, when there is nothing to sample)."""
    if path is not None:
        return load_probe_file(spec, path)
    stored = probe_path(home, spec.name)
    created = False
    if regenerate or not stored.is_file():
        rows, meta = sample_probes(spec, canary, pointers=pointers, datasets=datasets)
        if not rows:
            return ProbeSet(spec.name, stored, "none", meta["description"], [], [], "")
        make_private_dir(stored.parent)
        atomic_write_text(stored, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
        atomic_write_json(_meta_path(stored), {**meta, "signature": spec.name, "seed": canary.seed,
                                               "requested": canary.probes, "probes": len(rows),
                                               "created_at": time.time()})
        created = True
    meta = _read_meta(_meta_path(stored))
    probes = load_probe_file(spec, stored, source=str(meta.get("source") or "file"),
                             description=meta.get("description") or f"the probe file {stored}")
    probes.created = created
    return probes


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}
