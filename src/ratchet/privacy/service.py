"""Right to deletion: every record of one user removed from the home and the state database, step by step.

::

    report = delete_user_data(settings, "u-42")
    report.status, [(s.step, s.status, s.count) for s in report.steps]

The user is found by the keyed pseudonym of their id (:mod:`ratchet.store.pseudonyms`); the raw id is
never stored, logged or audited. Their request ids come from the request index and from telemetry
records carrying the pseudonym; then each place is cleaned in its own step (one failing does not stop
the others): telemetry (every file, rotated and ``.gz`` too), shadow records, feedback in telemetry and
in the database, the request index, dataset examples (found by the request id or pseudonym their
provenance records; every version rewritten, a new one committed), demos of program versions, canary
probe sets, run files, DSPy's disk cache, and finally the database files themselves (:func:`.database.scrub`).

Every deletion is recorded in the audit log (``privacy.delete_user``, target: the pseudonym, details:
each step's count). The audit log is never rewound by ``ratchet restore``, which calls
:func:`reapply_deletions` afterwards — every recorded user in one pass — so a restored older backup loses the
deleted users again.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ratchet.audit import audit, read_entries
from ratchet.config import Settings
from ratchet.data.datasets.purge import ExampleMatch
from ratchet.lm.cache import dspy_cache_dir, unused_dspy_cache
from ratchet.privacy.database import (
    delete_annotation_rows,
    delete_feedback_rows,
    delete_request_index_rows,
    request_ids_of,
    scrub,
)
from ratchet.privacy.files import purge_datasets, purge_demos, purge_probe_files, purge_run_files
from ratchet.privacy.report import DeletionReport, DeletionStep, run_step
from ratchet.privacy.telemetry import TelemetryPurge, UserTraces, find_user_requests, note_records, purge_telemetry
from ratchet.store.db import StateDB
from ratchet.store.pseudonyms import is_pseudonym, user_pseudonym
from ratchet.telemetry.database import database_sink

__all__ = ["DELETE_ACTION", "delete_pseudonym_data", "delete_user_data", "reapply_deletions", "recorded_deletions"]

log = logging.getLogger(__name__)

DELETE_ACTION = "privacy.delete_user"
REAPPLY_ACTION = "privacy.reapply"


def delete_user_data(settings: Settings, user_id: str) -> DeletionReport:
    """Remove every record of ``user_id`` (see the module docstring); the report lists each step."""
    if not isinstance(user_id, str) or not user_id:
        raise ValueError("a user id is required (the id the service was called with as user_id)")
    return delete_pseudonym_data(settings, user_pseudonym(settings, user_id))


def delete_pseudonym_data(settings: Settings, pseudonym: str, *, action: str = DELETE_ACTION) -> DeletionReport:
    """Remove every record of the user with this pseudonym, and audit it under ``action``."""
    if not is_pseudonym(pseudonym):
        raise ValueError(f"not a user pseudonym: {pseudonym!r}")
    return _erase(settings, [pseudonym], action=action, target=pseudonym)


def _erase(settings: Settings, pseudonyms: list[str], *, action: str, target: str) -> DeletionReport:
    """Remove every record of these users in one pass over each place, and audit it as one entry."""
    started = time.perf_counter()
    report = DeletionReport(user=target, deletion_id=uuid.uuid4().hex[:16], users=len(pseudonyms),
                            started_at=datetime.now(UTC).isoformat(timespec="seconds"))
    with StateDB.connect(settings) as db:
        _delete(report, settings, db, settings.home_dir, frozenset(pseudonyms))
    report.seconds = time.perf_counter() - started
    details: dict[str, Any] = {"deletion_id": report.deletion_id, "status": report.status, "users": len(pseudonyms),
                               **report.counts()}
    recorded = audit(settings, action, target=target, outcome="failed" if report.failed else "ok",
                     reason=", ".join(s.step for s in report.steps if s.status == "failed") or None, details=details)
    if recorded is None:
        report.steps.append(DeletionStep("audit", "failed", error="the audit log could not be written: this "
                                         "deletion will not be re-applied after a restore; run it again"))
    log.info("user data deletion %s for %s: %s in %.2f s", report.deletion_id, target, report.status,
             report.seconds)
    return report


def _delete(report: DeletionReport, settings: Settings, db: StateDB, home: Path, pseudonyms: frozenset[str]) -> None:
    telemetry_dir = home / "telemetry"
    sink = database_sink(settings, db)
    traces = UserTraces()
    request_ids: set[str] = set()

    def find(step: DeletionStep) -> None:
        problems = []
        try:
            indexed = request_ids_of(db, pseudonyms)
        except Exception as exc:  # the telemetry may still name them
            indexed = set()
            problems.append(f"request index: {type(exc).__name__}: {exc}")
        found = find_user_requests(telemetry_dir, pseudonyms) if telemetry_dir.is_dir() else UserTraces()
        if sink is not None:  # the shared sink holds every host's records (PostgreSQL)
            note_records(found, sink.find(pseudonyms))
        traces.request_ids |= found.request_ids
        traces.inputs.extend(found.inputs)
        request_ids.update(indexed | found.request_ids)
        step.removed(len(request_ids), from_request_index=len(indexed), from_telemetry=len(found.request_ids))
        if problems:
            raise RuntimeError("; ".join(problems))

    run_step(report, "find_requests", find)
    purge = TelemetryPurge()

    def telemetry(step: DeletionStep) -> None:
        nonlocal purge
        if telemetry_dir.is_dir():
            purge = purge_telemetry(telemetry_dir, pseudonyms, request_ids, traces)
        if sink is not None:
            removed, records = sink.purge(pseudonyms, request_ids)
            purge.removed.update(removed)
            note_records(traces, records)
            step.details["shared_sink"] = sum(removed.values())
        step.removed(purge.removed["interactions"] + purge.removed["malformed"],
                     malformed_removed=purge.removed["malformed"], malformed_kept=purge.malformed_kept,
                     files_scanned=purge.files_scanned, files_rewritten=purge.files_rewritten,
                     **({"truncated_files": purge.truncated_files} if purge.truncated_files else {}))

    telemetry_step = run_step(report, "telemetry", telemetry)
    for name, kind in (("shadow_records", "shadow"), ("feedback_telemetry", "feedback")):
        run_step(report, name, lambda step, kind=kind: _from(telemetry_step, step, purge.removed[kind]))

    def feedback_db(step: DeletionStep) -> None:
        rows, revisions = delete_feedback_rows(db, request_ids)
        step.removed(rows, revisions=revisions)

    run_step(report, "feedback_db", feedback_db)
    run_step(report, "request_index",
             lambda step: step.removed(delete_request_index_rows(db, pseudonyms, request_ids)))

    def annotation_queue(step: DeletionStep) -> None:
        tasks, answers = delete_annotation_rows(db, request_ids)
        step.removed(tasks, answers=answers)

    run_step(report, "annotation_queue", annotation_queue)

    def triage_reports(step: DeletionStep) -> None:
        from ratchet.flywheel import forget_requests

        changed = forget_requests(home / "reports", request_ids)
        step.removed(sum(changed.values()), files=sorted(changed))

    run_step(report, "triage_reports", triage_reports)
    edit = {"deletion_id": report.deletion_id}
    removed_values: list[dict[str, Any]] = []

    def datasets(step: DeletionStep) -> None:
        results = purge_datasets(home, _example_match(pseudonyms, request_ids), edit=edit)
        for result in results:
            removed_values.extend(result.removed_values)
        changed = [r.to_dict() for r in results if r.example_ids]
        step.removed(sum(len(r.example_ids) for r in results), signatures=changed)

    run_step(report, "datasets", datasets)

    def demos(step: DeletionStep) -> None:
        removed, versions = purge_demos(settings, traces.inputs, removed_values, edit=edit, db=db)
        step.removed(removed, versions=versions)

    run_step(report, "program_demos", demos)

    def probes(step: DeletionStep) -> None:
        changed = purge_probe_files(settings, traces.inputs, removed_values)
        step.removed(sum(changed.values()), files=sorted(changed))

    run_step(report, "canary_probes", probes)

    def run_files(step: DeletionStep) -> None:
        changed = purge_run_files(home / "runs", _example_match(pseudonyms, request_ids))
        step.removed(sum(changed.values()), files=sorted(changed))

    run_step(report, "run_files", run_files)
    run_step(report, "lm_cache", lambda step: _drop_lm_cache(step, home))
    touched = sum(report.step(name).count for name in ("feedback_db", "request_index", "annotation_queue"))
    run_step(report, "database_scrub", lambda step: _scrub(step, db) if touched else None)


def _from(source: DeletionStep, step: DeletionStep, count: int) -> None:
    """A count of the telemetry step's rewrite (unknown when it failed)."""
    if source.status == "failed":
        raise RuntimeError("the telemetry files could not be rewritten (see the telemetry step)")
    step.removed(count)


def _example_match(pseudonyms: frozenset[str], request_ids: set[str]) -> ExampleMatch:
    """Whether a stored example came from the users: by the pseudonym its provenance records, or by the request id
    when it records no pseudonym (collected before pseudonyms existed)."""

    def match(item: Mapping[str, Any]) -> bool:
        meta = item.get("_meta") if isinstance(item, Mapping) else None
        metadata = meta.get("metadata") if isinstance(meta, Mapping) else None
        if not isinstance(metadata, Mapping):
            return False
        owner = metadata.get("user_pseudonym")
        return owner in pseudonyms or (owner is None and metadata.get("request_id") in request_ids)

    return match


def _drop_lm_cache(step: DeletionStep, home: Path) -> None:
    """DSPy's disk cache keeps prompts (demos, evaluated examples): it is only a cache, so it goes whole."""
    import shutil

    directory = dspy_cache_dir(home)
    if not directory.exists():
        return
    with unused_dspy_cache(home) as unused:
        if not unused:
            raise RuntimeError(f"{directory} is in use by an optimization or evaluation; run the deletion again "
                               "after it ends")
        shutil.rmtree(directory)
    step.removed(1, removed=str(directory.relative_to(home)))


def _scrub(step: DeletionStep, db: StateDB) -> None:
    step.details.update(scrub(db))
    step.details["dialect"] = db.dialect
    step.status = "ok"


def recorded_deletions(settings: Settings) -> list[str]:
    """The pseudonyms of every deletion the home's audit log records, oldest first, once each."""
    seen: dict[str, None] = {}
    for entry in read_entries(settings.home_dir, action="privacy"):
        if entry.get("action") == DELETE_ACTION and is_pseudonym(entry.get("target")):
            seen.setdefault(entry["target"], None)
    return list(seen)


def reapply_deletions(settings: Settings) -> DeletionReport | None:
    """Run every recorded deletion again (after a restore put older data back), all users in one pass over each
    place; one report and one audit entry (``privacy.reapply``). None when no deletion is recorded."""
    pseudonyms = recorded_deletions(settings)
    if not pseudonyms:
        return None
    return _erase(settings, pseudonyms, action=REAPPLY_ACTION, target=f"{len(pseudonyms)} recorded deletion(s)")
