"""Phase 2's import: the week's answered annotation tasks into the golden set or the training data, once each.

Every case the annotators agree on (accepted or corrected, see :func:`ratchet.annotate.labelled_cases`)
goes to exactly one place, because the leakage rule forbids an input in both: a stable share (by a hash of
its inputs, ``golden_share``) grows the golden set, the rest joins the training data as a new dataset version
with its provenance (task, request, annotators, week, cluster, kind). An input already golden is relabelled
there. Rejected and conflicting cases go nowhere but are counted.

The ledger table ``annotation_imports`` records each task handled, so a re-run imports only what is new and
tasks of earlier weeks answered late are picked up by the next week's phase 2. Writes happen in the order
training → golden → ledger; after a crash anywhere in between, a re-run skips what already landed (equal
examples are neither added twice nor re-versioned) and completes the ledger.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from ratchet.annotate import LabelledCase, labelled_cases
from ratchet.config import Settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.golden import GoldenExample, GoldenStore
from ratchet.data.records import ExampleRecord, example_id, input_hash
from ratchet.errors import DataError
from ratchet.flywheel.week import IsoWeek
from ratchet.hashing import sha256_hex
from ratchet.programs.registry import ProgramRegistry
from ratchet.store.db import StateDB
from ratchet.store.tables import annotation_imports as ledger

__all__ = ["DESTINATIONS", "SignatureImport", "WeekImport", "destinations", "goes_to_golden", "import_annotations"]

SOURCE = "annotation"
DESTINATIONS = ("golden", "training", "rejected", "conflict", "refused")
"""Where a handled task went: ``refused`` when the training store's admission checks turned the example away."""


def goes_to_golden(inputs_hash: str, share: float) -> bool:
    """The stable draw that sends a case with these inputs to the golden set (else to training)."""
    return int(sha256_hex(f"golden-split:{inputs_hash}")[:15], 16) / 16**15 < share


@dataclass
class SignatureImport:
    """What phase 2 did for one signature."""

    signature: str
    accepted: int = 0
    corrected: int = 0
    rejected: int = 0
    conflicts: int = 0
    from_earlier_weeks: int = 0  # answered tasks of earlier weeks this run imported
    golden_added: int = 0
    golden_relabelled: int = 0
    golden_unchanged: int = 0  # already golden with the same label (a re-run after a crash)
    golden_version: str | None = None
    golden_before: int = 0
    golden_after: int = 0
    training_added: int = 0
    training_duplicates: int = 0
    training_refused: int = 0
    training_version: str | None = None
    by_cluster: dict[str, dict[str, int]] = field(default_factory=dict)  # cluster id → kind → count

    @property
    def imported(self) -> int:
        return self.accepted + self.corrected

    def to_dict(self) -> dict[str, Any]:
        return {"signature": self.signature, "accepted": self.accepted, "corrected": self.corrected,
                "rejected": self.rejected, "conflicts": self.conflicts, "from_earlier_weeks": self.from_earlier_weeks,
                "golden": {"added": self.golden_added, "relabelled": self.golden_relabelled,
                           "unchanged": self.golden_unchanged, "version": self.golden_version,
                           "before": self.golden_before, "after": self.golden_after},
                "training": {"added": self.training_added, "duplicates": self.training_duplicates,
                             "refused": self.training_refused, "version": self.training_version},
                "by_cluster": self.by_cluster}


@dataclass
class WeekImport:
    """Phase 2's import for a week: per signature, plus tasks skipped because their signature is not registered."""

    week: str
    golden_share: float
    signatures: dict[str, SignatureImport] = field(default_factory=dict)
    unregistered: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"week": self.week, "golden_share": self.golden_share,
                "signatures": {n: s.to_dict() for n, s in sorted(self.signatures.items())},
                "unregistered": self.unregistered}


def import_annotations(settings: Settings, registry: ProgramRegistry, db: StateDB, week: IsoWeek, *,
                       signature: str | None = None, golden_share: float = 0.5) -> WeekImport:
    """Import every answered task of ``week`` and earlier weeks not imported yet (of ``signature``, or all)."""
    if not 0.0 <= golden_share <= 1.0:
        raise DataError(f"golden_share must be between 0 and 1, got {golden_share}")
    with db.begin() as conn:
        done = set(conn.scalars(select(ledger.c.task_id)))
    found = labelled_cases(db, signature=signature, through_week=str(week))
    result = WeekImport(week=str(week), golden_share=golden_share)
    rows: list[dict[str, Any]] = []
    cases: dict[str, list[LabelledCase]] = {}
    for case in found.cases:
        if case.task_id not in done:
            cases.setdefault(case.signature, []).append(case)
    for kind, pairs in (("rejected", found.rejected), ("conflict", found.conflicts)):
        for name, task_id, task_week in pairs:
            if task_id in done:
                continue
            if name not in registry:
                result.unregistered[name] = result.unregistered.get(name, 0) + 1
                continue
            part = result.signatures.setdefault(name, SignatureImport(name))
            if kind == "rejected":
                part.rejected += 1
            else:
                part.conflicts += 1
            rows.append(_row(task_id, name, task_week, kind, None, week))
    for name, batch in sorted(cases.items()):
        if name not in registry:
            result.unregistered[name] = result.unregistered.get(name, 0) + len(batch)
            continue
        part = result.signatures.setdefault(name, SignatureImport(name))
        rows.extend(_import_signature(settings, registry, name, batch, week, golden_share, part))
    _record(db, rows)
    return result


def _import_signature(settings: Settings, registry: ProgramRegistry, name: str, batch: Sequence[LabelledCase],
                      week: IsoWeek, share: float, part: SignatureImport) -> list[dict[str, Any]]:
    schema = registry.get(name).schema
    golden_store = GoldenStore(Path(settings.home_dir), settings.data, registry=registry)
    golden = {e.input_hash(schema): e for e in golden_store.examples(name)}
    part.golden_before = part.golden_after = len(golden)
    to_golden: list[LabelledCase] = []
    to_training: list[LabelledCase] = []
    for case in batch:
        if case.kind == "correct":
            part.corrected += 1
        else:
            part.accepted += 1
        part.from_earlier_weeks += case.week < str(week)
        counts = part.by_cluster.setdefault(case.cluster_id or "(none)", {})
        counts[case.kind] = counts.get(case.kind, 0) + 1
        digest = input_hash({k: case.inputs[k] for k in schema.input_names if k in case.inputs})
        (to_golden if digest in golden or goes_to_golden(digest, share) else to_training).append(case)
    rows = []
    note = f"ratchet flywheel run --week {week} --continue"
    if to_training:
        version, refused = _add_training(settings, registry, name, to_training, note, part)
        rows.extend(_row(c.task_id, name, c.week, "refused" if c.task_id in refused else "training",
                         None if c.task_id in refused else version, week) for c in to_training)
    if to_golden:
        version = _add_golden(golden_store, schema, name, to_golden, golden, note, part)
        rows.extend(_row(c.task_id, name, c.week, "golden", version, week) for c in to_golden)
    return rows


def _record_of(case: LabelledCase) -> ExampleRecord:
    meta = case.meta()["metadata"]
    return ExampleRecord(values={**case.inputs, **case.values}, signature=case.signature, source=SOURCE,
                         metadata={**meta, "kind": case.kind})


def _add_training(settings: Settings, registry: ProgramRegistry, name: str, cases: Sequence[LabelledCase], note: str,
                  part: SignatureImport) -> tuple[str | None, set[str]]:
    """Add the cases as a training version; returns it (None when nothing was new) and the refused task ids."""
    store = DatasetStore(Path(settings.home_dir), settings.data, registry=registry)
    schema = registry.get(name).schema
    stored = {r.id for r in store.load(name).records} if store.latest_version(name) else set()
    fresh = [c for c in cases if example_id(name, _inputs(c, schema)) not in stored]
    part.training_duplicates += len(cases) - len(fresh)
    if not fresh:
        return store.latest_version(name), set()
    records = [_record_of(c) for c in fresh]
    try:
        written = store.add(name, records, source=SOURCE, notes=note)
    except DataError as exc:  # every one refused by the store's admission checks
        if "no acceptable examples" not in str(exc):
            raise
        part.training_refused += len(fresh)
        return None, {c.task_id for c in fresh}
    refused = {fresh[r.index - 1].task_id for r in written.rejected}
    part.training_added += written.added
    part.training_duplicates += len(written.duplicates)
    part.training_refused += len(refused)
    part.training_version = written.version
    return written.version, refused


def _add_golden(store: GoldenStore, schema: Any, name: str, cases: Sequence[LabelledCase],
                golden: dict[str, GoldenExample], note: str, part: SignatureImport) -> str | None:
    """Add the cases to the golden set (relabelling equal inputs); returns the version they are in."""
    changed = []
    for case in cases:
        values = {**case.inputs, **case.values}
        digest = input_hash(_inputs(case, schema))
        before = golden.get(digest)
        if before is not None and {k: before.values.get(k) for k in values} == values:
            part.golden_unchanged += 1
            continue
        part.golden_relabelled += before is not None
        part.golden_added += before is None
        changed.append(GoldenExample(values=values, task_id=case.task_id, annotator=",".join(case.annotators),
                                     request_id=case.request_id, source=SOURCE,
                                     extra={"week": case.week, "cluster_id": case.cluster_id, "kind": case.kind}))
    if not changed:
        part.golden_version = store.latest_version(name)
        return part.golden_version
    written = store.add(name, [e.to_record(name) for e in changed], source=SOURCE, notes=note)
    part.golden_version, part.golden_after = written.version, written.example_count
    return written.version


def _inputs(case: LabelledCase, schema: Any) -> dict[str, Any]:
    return {k: case.inputs[k] for k in schema.input_names if k in case.inputs}


def _row(task_id: str, signature: str, week: str, destination: str, version: str | None,
         imported: IsoWeek) -> dict[str, Any]:
    return {"task_id": task_id, "signature": signature, "week": week, "destination": destination,
            "version": version, "imported_week": str(imported), "imported_at": time.time()}


def _record(db: StateDB, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    with db.begin(write=True) as conn:
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        for row in rows:
            conn.execute(insert(ledger).values(**row).on_conflict_do_nothing())


def destinations(db: StateDB, week: IsoWeek) -> Counter[str]:
    """How many tasks each destination received in ``week``'s phase 2 runs (all of them, re-runs included)."""
    with db.begin() as conn:
        return Counter(conn.scalars(select(ledger.c.destination).where(ledger.c.imported_week == str(week))))
