"""Issue 14, item 2: the annotation queue on real SQLite and PostgreSQL — leases (no double assignment, expiry),
double annotation, validated answers, Cohen's kappa, export with provenance, idempotent task creation."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import threading
import time
from pathlib import Path
from typing import Literal

import dspy
import pytest
from sqlalchemy import update

from ratchet.annotate import (
    AnnotationError,
    LeaseError,
    UnknownTaskError,
    cohen_kappa,
    create_tasks,
    export,
    get_task,
    nearest_examples,
    next_task,
    parse_assignments,
    release,
    stats,
    submit,
)
from ratchet.data.records import ExampleRecord
from ratchet.errors import InputValidationError
from ratchet.programs.registry import ProgramRegistry, ProgramSpec
from ratchet.store.db import StateDB
from ratchet.store.tables import annotation_tasks

SIG = "triage_ticket"
WEEK = "2026-W48"


class TriageTicket(dspy.Signature):
    """Route a support ticket."""

    text: str = dspy.InputField()
    category: Literal["billing", "bug", "account"] = dspy.OutputField()
    urgency: int = dspy.OutputField()


def triage_ticket() -> dspy.Module:
    return dspy.Predict(TriageTicket)


@pytest.fixture
def registry() -> ProgramRegistry:
    reg = ProgramRegistry()
    reg.register(ProgramSpec(name=SIG, factory=triage_ticket, metric=lambda e, p, t=None: 1.0,
                             signature=TriageTicket, label_field="category"))
    return reg


@pytest.fixture
def db(state_db_url: str) -> StateDB:
    with StateDB(state_db_url) as database:
        yield database


def items(n: int, *, priority=lambda i: float(i)) -> list[dict]:
    return [{"request_id": f"req-{i}", "inputs": {"text": f"ticket number {i} about my invoice"},
             "output": {"category": "billing", "urgency": 2}, "cluster": f"c{i % 2}", "cluster_label": "invoice",
             "priority": priority(i)} for i in range(n)]


def test_task_creation_is_idempotent_and_double_share_is_stable(db: StateDB) -> None:
    first = create_tasks(db, SIG, items(200), week=WEEK, double_share=0.25, seed=7)
    assert len(first.created) == 200 and first.existing == []
    assert 30 <= first.double <= 70  # a quarter, by a stable draw
    again = create_tasks(db, SIG, items(200) + items(3), week=WEEK, double_share=0.25, seed=7)
    assert again.created == [] and len(again.existing) == 200
    other_week = create_tasks(db, SIG, items(2), week="2026-W49")
    assert len(other_week.created) == 2
    assert sum(get_task(db, t).needed == 2 for t in first.created) == first.double
    with pytest.raises(AnnotationError, match="week must look like"):
        create_tasks(db, SIG, items(1), week="48")
    with pytest.raises(AnnotationError, match="request_id, inputs and output"):
        create_tasks(db, SIG, [{"request_id": "x"}], week=WEEK)


def test_next_leases_the_highest_priority_and_renews_its_own(db: StateDB) -> None:
    create_tasks(db, SIG, items(3), week=WEEK, double_share=0.0)
    task = next_task(db, annotator="ann", lease_s=60)
    assert task is not None and task.request_id == "req-2" and task.status == "leased" and task.lease_holder == "ann"
    assert task.inputs == {"text": "ticket number 2 about my invoice"} and task.cluster_id == "c0"
    again = next_task(db, annotator="ann", lease_s=60)
    assert again is not None and again.task_id == task.task_id  # still theirs: shown again, not a second lease
    other = next_task(db, annotator="bob", lease_s=60)
    assert other is not None and other.request_id == "req-1"
    assert next_task(db, annotator="ann", signature="nothing_here") is None


def test_racing_annotators_never_share_a_task(db: StateDB) -> None:
    create_tasks(db, SIG, items(12), week=WEEK, double_share=0.0)
    got: dict[str, list[str]] = {}
    errors: list[BaseException] = []
    barrier = threading.Barrier(6)

    def work(name: str) -> None:
        try:
            barrier.wait()
            mine = got.setdefault(name, [])
            while (task := next_task(db, annotator=name, lease_s=60)) is not None:
                mine.append(task.task_id)
                submit(db, _registry(), task.task_id, name, accept=True)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(f"a{i}",)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    taken = [t for ids in got.values() for t in ids]
    assert len(taken) == 12 and len(set(taken)) == 12  # each task leased to exactly one annotator
    assert stats(db).backlog[0].done == 12


def _drain_in_process(url: str, name: str, barrier, queue) -> None:
    """A separate annotator process: lease and answer (reject: no registry needed) until the queue is empty."""
    taken = []
    with StateDB(url) as db:
        barrier.wait()
        while (task := next_task(db, annotator=name, lease_s=60)) is not None:
            taken.append(task.task_id)
            submit(db, ProgramRegistry(), task.task_id, name, reject=True, reason="race test")
    queue.put(taken)


def test_racing_annotator_processes_never_share_a_task(db: StateDB, state_db_url: str) -> None:
    create_tasks(db, SIG, items(30), week=WEEK, double_share=0.0)
    ctx = multiprocessing.get_context("spawn")
    barrier, queue = ctx.Barrier(3), ctx.Queue()
    processes = [ctx.Process(target=_drain_in_process, args=(state_db_url, f"p{i}", barrier, queue))
                 for i in range(3)]
    for process in processes:
        process.start()
    results = [queue.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(60)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    taken = [t for ids in results for t in ids]
    assert len(taken) == 30 and len(set(taken)) == 30
    assert stats(db).backlog[0].done == 30


def _registry() -> ProgramRegistry:
    reg = ProgramRegistry()
    reg.register(ProgramSpec(name=SIG, factory=triage_ticket, metric=lambda e, p, t=None: 1.0,
                             signature=TriageTicket))
    return reg


def test_an_expired_lease_returns_to_the_queue(db: StateDB, registry: ProgramRegistry) -> None:
    create_tasks(db, SIG, items(1), week=WEEK, double_share=0.0)
    task = next_task(db, annotator="ann", lease_s=60)
    assert task is not None and next_task(db, annotator="bob") is None
    with db.begin(write=True) as conn:  # the lease runs out
        conn.execute(update(annotation_tasks).values(lease_expires_at=time.time() - 1))
    assert stats(db).backlog[0].open == 1
    taken = next_task(db, annotator="bob", lease_s=60)
    assert taken is not None and taken.task_id == task.task_id and taken.lease_holder == "bob"
    with pytest.raises(LeaseError, match="ann does not hold the lease"):
        submit(db, registry, task.task_id, "ann", accept=True)
    assert submit(db, registry, task.task_id, "bob", accept=True).kind == "accept"
    assert get_task(db, task.task_id).status == "done"


def test_an_expired_lease_is_still_yours_until_taken_and_release_frees_it(db: StateDB,
                                                                         registry: ProgramRegistry) -> None:
    create_tasks(db, SIG, items(2), week=WEEK, double_share=0.0)
    task = next_task(db, annotator="ann", lease_s=60)
    assert task is not None
    with db.begin(write=True) as conn:
        conn.execute(update(annotation_tasks).where(annotation_tasks.c.task_id == task.task_id)
                     .values(lease_expires_at=time.time() - 1))
    assert submit(db, registry, task.task_id, "ann", accept=True).kind == "accept"  # nobody took it meanwhile
    other = next_task(db, annotator="ann", lease_s=60)
    assert other is not None and other.task_id != task.task_id
    assert not release(db, other.task_id, "bob") and release(db, other.task_id, "ann")
    assert get_task(db, other.task_id).status == "open" and stats(db).backlog[0].open == 1


def test_double_annotation_needs_two_different_annotators(db: StateDB, registry: ProgramRegistry) -> None:
    create_tasks(db, SIG, items(1), week=WEEK, double_share=1.0)
    task = next_task(db, annotator="ann")
    assert task is not None and task.needed == 2
    submit(db, registry, task.task_id, "ann", set_values={"category": "bug"})
    assert get_task(db, task.task_id).status == "open"
    assert next_task(db, annotator="ann") is None  # ann answered it already
    second = next_task(db, annotator="bob")
    assert second is not None and second.task_id == task.task_id
    submit(db, registry, task.task_id, "bob", accept=True)
    assert get_task(db, task.task_id).status == "done"


def test_bad_answers_are_refused_with_the_field_named(db: StateDB, registry: ProgramRegistry) -> None:
    create_tasks(db, SIG, items(2), week=WEEK, double_share=0.0)
    task = next_task(db, annotator="ann")
    assert task is not None
    with pytest.raises(InputValidationError, match="unknown output field 'categroy'") as unknown:
        submit(db, registry, task.task_id, "ann", set_values={"categroy": "bug"})
    assert unknown.value.field == "categroy"
    with pytest.raises(InputValidationError, match=r"output field 'category'.*'billing', 'bug' or 'account'"):
        submit(db, registry, task.task_id, "ann", set_values={"category": "refund"})
    with pytest.raises(InputValidationError, match=r"output field 'urgency'.*integer"):
        submit(db, registry, task.task_id, "ann", set_values={"urgency": "very"})
    with pytest.raises(AnnotationError, match="needs a reason"):
        submit(db, registry, task.task_id, "ann", reject=True)
    with pytest.raises(AnnotationError, match="exactly one"):
        submit(db, registry, task.task_id, "ann", accept=True, skip=True)
    with pytest.raises(LeaseError, match="bob does not hold the lease"):
        submit(db, registry, task.task_id, "bob", accept=True)
    with pytest.raises(UnknownTaskError, match="no annotation task"):
        submit(db, registry, "nope", "ann", accept=True)
    assert get_task(db, task.task_id).status == "leased"  # nothing was recorded
    answer = submit(db, registry, task.task_id, "ann", reject=True, reason="not a support ticket")
    assert answer.kind == "reject" and answer.reason == "not a support ticket"
    with pytest.raises(LeaseError):
        submit(db, registry, task.task_id, "ann", accept=True)  # done: nobody holds it


def test_skips_leave_the_task_to_others_until_two_skip(db: StateDB, registry: ProgramRegistry) -> None:
    create_tasks(db, SIG, items(1), week=WEEK, double_share=0.0)
    for name in ("ann", "bob"):
        task = next_task(db, annotator=name)
        assert task is not None
        assert submit(db, registry, task.task_id, name, skip=True).kind == "skip"
    assert get_task(db, task.task_id).status == "skipped"
    assert next_task(db, annotator="cat") is None


def test_cohen_kappa_matches_a_hand_computed_value() -> None:
    # 10 items, raters agree on 7: p_o = 0.7; marginals A: x5 y5, B: x4 y6 → p_e = (5·4 + 5·6)/100 = 0.5
    first = ["x", "x", "x", "x", "x", "y", "y", "y", "y", "y"]
    second = ["x", "x", "x", "y", "y", "x", "y", "y", "y", "y"]
    assert cohen_kappa(first, second) == pytest.approx((0.7 - 0.5) / (1 - 0.5))  # 0.4
    assert cohen_kappa([], []) is None
    assert cohen_kappa(["a", "a"], ["a", "a"]) == 1.0


def test_stats_report_backlog_annotators_and_kappa(db: StateDB, registry: ProgramRegistry) -> None:
    create_tasks(db, SIG, items(4), week=WEEK, double_share=1.0)
    answers = {"ann": ["bug", "bug", "billing", "account"], "bob": ["bug", "billing", "billing", "account"]}
    for name, labels in answers.items():
        for label in labels:
            task = next_task(db, annotator=name)
            assert task is not None
            submit(db, registry, task.task_id, name, set_values={"category": label})
    result = stats(db)
    assert result.backlog[0].done == 4 and result.backlog[0].open == 0
    assert result.annotators["ann"] == {"correct": 3, "accept": 1} and result.annotators["bob"]["accept"] == 2
    agreement = result.agreement[0]
    # ann, bob on the same tasks (priority order): bug/bug, bug/billing, billing/billing, account/account
    # p_o = 3/4; A: bug 2, billing 1, account 1; B: bug 1, billing 2, account 1 → p_e = (2+2+1)/16
    assert agreement.tasks == 4 and agreement.agreed == 3
    assert agreement.kappa == pytest.approx((0.75 - 5 / 16) / (1 - 5 / 16))


def test_export_writes_accepted_and_corrected_cases_with_provenance(db: StateDB, registry: ProgramRegistry,
                                                                     tmp_path: Path) -> None:
    created = create_tasks(db, SIG, items(4), week=WEEK, double_share=0.0).created
    plan = {"req-3": {"accept": True}, "req-2": {"set_values": {"category": "bug", "urgency": 5}},
            "req-1": {"reject": True, "reason": "spam"}, "req-0": {"skip": True}}
    for _ in created:
        task = next_task(db, annotator="ann")
        assert task is not None
        submit(db, registry, task.task_id, "ann", **plan[task.request_id])
    out = tmp_path / "golden_dataset"
    result = export(db, out)
    path = out / f"{SIG}.jsonl"
    assert result.exported == {SIG: 2} and result.rejected == {SIG: 1} and result.files == {SIG: str(path)}
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_request = {line["_meta"]["metadata"]["request_id"]: line for line in lines}
    accepted, corrected = by_request["req-3"], by_request["req-2"]
    assert (accepted["category"], accepted["urgency"], accepted["_meta"]["kind"]) == ("billing", 2, "accept")
    assert (corrected["category"], corrected["urgency"], corrected["_meta"]["kind"]) == ("bug", 5, "correct")
    assert corrected["text"] == "ticket number 2 about my invoice"
    meta = corrected["_meta"]
    assert meta["source"] == "annotation" and meta["signature"] == SIG
    assert meta["metadata"]["annotators"] == ["ann"] and meta["metadata"]["task_id"] == meta["id"]
    assert meta["metadata"]["week"] == WEEK and meta["metadata"]["cluster_id"] == "c0"
    ExampleRecord.from_json(corrected)  # the dataset store can read it
    assert export(db, tmp_path / "none", signature="other").files == {}


def test_export_leaves_out_double_annotated_disagreements(db: StateDB, registry: ProgramRegistry,
                                                         tmp_path: Path) -> None:
    create_tasks(db, SIG, items(1), week=WEEK, double_share=1.0)
    for name, label in (("ann", "bug"), ("bob", "account")):
        task = next_task(db, annotator=name)
        assert task is not None
        submit(db, registry, task.task_id, name, set_values={"category": label})
    result = export(db, tmp_path)
    assert result.conflicts == {SIG: 1} and result.exported == {}


def test_nearest_examples_and_parsed_assignments(registry: ProgramRegistry) -> None:
    schema = registry.get(SIG).schema
    records = [ExampleRecord(values={"text": t, "category": c, "urgency": 1}, signature=SIG, source="x", id=t[:4])
               for t, c in (("refund my invoice please", "billing"), ("app crashes on login", "bug"),
                            ("change my account email", "account"), ("invoice is wrong", "billing"))]
    near = nearest_examples(schema, records, {"text": "my invoice is wrong"}, k=2)
    assert [n.outputs["category"] for n in near] == ["billing", "billing"]
    assert near[0].inputs == {"text": "invoice is wrong"} and near[0].similarity == pytest.approx(3 / 4)
    assert nearest_examples(schema, records, {"text": "zzz"}) == []
    assert parse_assignments(schema, ["category=bug", "urgency=3"]) == {"category": "bug", "urgency": 3}
    assert parse_assignments(schema, ["urgency=high"]) == {"urgency": "high"}  # left for validation to name
    with pytest.raises(InputValidationError, match="unknown output field 'label'"):
        parse_assignments(schema, ["label=bug"])
    with pytest.raises(AnnotationError, match="field=value"):
        parse_assignments(schema, ["bug"])
