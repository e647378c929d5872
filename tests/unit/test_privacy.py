"""Right to deletion: pseudonyms on every record, and every step of ``delete_user_data`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import gzip
import io
import json
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path

import dspy
import pytest
from sqlalchemy import select, text

from ratchet.audit import read_entries
from ratchet.config import Settings
from ratchet.data.collect.telemetry import TelemetryCollector
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import read_batch
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.privacy import delete_user_data, reapply_deletions, recorded_deletions
from ratchet.programs.versions import VersionStore
from ratchet.serve import Runtime
from ratchet.store.db import StateDB
from ratchet.store.pseudonyms import Pseudonymizer, is_pseudonym, pseudonym_of, user_pseudonym
from ratchet.store.tables import feedback, feedback_revisions, request_index
from ratchet.telemetry.logfiles import ACTIVE_NAME, iter_log_files
from ratchet.telemetry.rotation import compress_pending, rotate

SIG = "classify_intent"
U, V = "alice-raw-id-4242", "bob-raw-id-9191"
U_TEXTS = ["my zebrafrost card never arrived", "quokkalantern card still missing", "the xylowhisper card is late"]
V_TEXTS = ["my marmotcinder card never came", "where is the ottervelvet card"]


def _lm() -> dspy.LM:
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    return dspy.LM("scripted/t", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False, num_retries=0)


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator:
    made: list[Runtime] = []

    def make(database_url: str | None = None) -> Runtime:
        settings = Settings(home=tmp_path / "home", database_url=database_url)
        settings.telemetry.sampling_rate = 1.0
        settings.serve.outcome_flush_interval_s = 0.1
        runtime = Runtime(settings, lms=LMBundle.for_lm(_lm(), CompletionAdapter()))
        made.append(runtime)
        return runtime

    yield make
    for runtime in made:
        runtime.close()


def _records(home: Path) -> list[dict]:
    out = []
    for path in iter_log_files(home / "telemetry"):
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        out.extend(json.loads(line) for line in raw.splitlines() if line.strip())
    return out


def _rotate(directory: Path) -> None:
    assert rotate(directory, 0, lambda *a: None, print)
    compress_pending(directory, lambda *a: None, print)


def _every_file(root: Path) -> Iterator[tuple[Path, bytes]]:
    """Every file under ``root`` with its bytes, decompressed when gzipped (a .tar.gz's members are then plain)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            if path.name.endswith(".gz"):
                data += gzip.decompress(data)
            yield path, data


def _leftovers(roots: list[Path], needles: list[str]) -> list[str]:
    found = []
    for root in roots:
        for path, data in _every_file(root):
            found += [f"{path}: {n}" for n in needles if n.encode() in data]
    return found


def _populate(runtime: Runtime, home: Path) -> dict[str, list[str]]:
    """U and V call and give feedback; telemetry rotates (to .gz) in between; two dataset versions are collected
    (the older one archived); a program version holds demos of both users."""
    ids: dict[str, list[str]] = {U: [], V: []}
    for n, (user, texts) in enumerate(((U, U_TEXTS[:2]), (V, V_TEXTS[:1]))):
        for i, text_ in enumerate(texts):
            result = runtime.call(SIG, {"text": text_}, request_id=f"r{n}{i}", user_id=user)
            ids[user].append(result.request_id)
    runtime.feedback(ids[U][0], 1.0, {"intent": "lost_or_stolen_card"})
    runtime.feedback(ids[V][0], 1.0)
    runtime.flush()
    _rotate(home / "telemetry")
    for user, texts in ((U, U_TEXTS[2:]), (V, V_TEXTS[1:])):
        result = runtime.call(SIG, {"text": texts[0]}, request_id=f"late-{user[:3]}", user_id=user)
        ids[user].append(result.request_id)
        runtime.feedback(result.request_id, 0.9)
    runtime.call(SIG, {"text": "an anonymous card question"})  # no user id: no pseudonym
    runtime.flush()
    store = DatasetStore(home, runtime.settings.data, registry=runtime.registry)
    for n in (1, 2):
        out = home / "runs" / f"collect-{n}"
        TelemetryCollector(iter_log_files(home / "telemetry"), runtime.registry, signature=SIG,
                           min_quality_score=0.5).collect(out)
        records = read_batch(out / f"{SIG}.jsonl")
        if n == 1:
            store.create(SIG, records[:3], source="telemetry")
        else:
            store.add(SIG, records, source="telemetry")
    store.archive(SIG, older_than_days=0, keep=1)
    module = runtime.registry.get(SIG).build()
    for _, predictor in module.named_predictors():
        predictor.demos = [dspy.Example(text=U_TEXTS[0], intent="lost_or_stolen_card"),
                           dspy.Example(text=V_TEXTS[0], intent="card_arrival")]
    VersionStore(home).save(runtime.registry.get(SIG), module, lm="scripted/t", adapter="completion")
    return ids


# -- pseudonyms on every record ---------------------------------------------------------------------------------

def test_pseudonyms_are_keyed_stable_and_short(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home")
    p = user_pseudonym(settings, U)
    assert is_pseudonym(p) and len(p) == 32 and p == user_pseudonym(settings, U) != user_pseudonym(settings, V)
    assert pseudonym_of(b"another secret key", U) != p  # without the secret a guessed id cannot be tested
    assert (tmp_path / "home" / "secrets" / "service.key").stat().st_mode & 0o777 == 0o400
    lazy = Pseudonymizer(Settings(home=tmp_path / "other"))
    assert lazy(None) is None and lazy("") is None and not (tmp_path / "other").exists()
    assert lazy("\ud800") is not None  # a lone surrogate from JSON does not crash the call path


def test_served_shadow_and_feedback_records_carry_the_pseudonym_never_the_raw_id(make_runtime, tmp_path) -> None:
    runtime = make_runtime()
    result = runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U)
    runtime.call(SIG, {"text": "nobody's"})
    runtime.feedback(result.request_id, 1.0, {"intent": "card_arrival"})
    runtime.flush()
    home = tmp_path / "home"
    pseudonym = user_pseudonym(runtime.settings, U)
    records = _records(home)
    mine = [r for r in records if r.get("user_pseudonym") == pseudonym]
    assert sorted(r["record"] for r in mine) == ["feedback", "interaction"]
    assert next(r for r in records if "user_pseudonym" not in r)["input"] == {"text": "nobody's"}
    with StateDB.connect(runtime.settings) as db, db.begin() as conn:
        rows = dict(conn.execute(select(request_index.c.request_id, request_index.c.user_pseudonym)).all())
    assert rows[result.request_id] == pseudonym and None in rows.values()  # the anonymous call has none
    assert not _leftovers([home], [U])


# -- the deletion -------------------------------------------------------------------------------------------------

def test_delete_user_data_removes_every_trace_and_keeps_others(make_runtime, tmp_path, state_db_url) -> None:
    runtime = make_runtime(state_db_url)
    home = tmp_path / "home"
    ids = _populate(runtime, home)
    assert any(p.name.endswith(".jsonl.gz") for p in iter_log_files(home / "telemetry"))
    assert _leftovers([home], U_TEXTS[:1])  # the data is there to be deleted
    pseudonym = user_pseudonym(runtime.settings, U)
    if state_db_url.startswith("postgresql"):
        with runtime.db.begin() as conn:
            before = conn.scalar(text("SELECT pg_relation_filenode('feedback')"))

    probes = home / "canaries" / f"{SIG}.jsonl"  # a canary probe set sampled from a test split
    probes.parent.mkdir(mode=0o700)
    probes.write_text("".join(json.dumps({"text": t, "intent": "card_arrival"}) + "\n"
                              for t in (U_TEXTS[1], V_TEXTS[0])))
    report = delete_user_data(runtime.settings, U)

    steps = {s.step: s for s in report.steps}
    assert steps["canary_probes"].count == 1 and V_TEXTS[0] in probes.read_text()
    assert report.status == "ok", report.to_dict()
    assert report.user == pseudonym and U not in json.dumps(report.to_dict())
    assert steps["find_requests"].count == 3
    assert steps["telemetry"].count == 3 and steps["telemetry"].details["files_rewritten"] == 2
    assert steps["feedback_telemetry"].count == 2 and steps["shadow_records"].status == "nothing"
    assert steps["feedback_db"].count == 2 and steps["request_index"].count == 3
    assert steps["datasets"].count >= 2 and steps["datasets"].details["signatures"][0]["new_version"]
    assert steps["program_demos"].count == 1 and steps["run_files"].count >= 2
    assert steps["database_scrub"].status == "ok"
    roots = [home, tmp_path / "state"]
    assert not _leftovers(roots, [*U_TEXTS, U, *ids[U]]), "the user's text is still stored"
    assert len(_leftovers(roots, V_TEXTS)) > 3  # another user's records are intact
    # datasets: every version still verifies (rewritten fingerprints), the newest has no U example
    store = DatasetStore(home, runtime.settings.data, registry=runtime.registry)
    versions = store.list_versions(SIG)
    assert len(versions) == 3 and versions[-1].metadata["operation"]["kind"] == "delete_user_data"
    for info in versions:
        dataset = store.load(SIG, info.version)
        assert all(r.values["text"] not in U_TEXTS for r in dataset.records)
        assert info.example_count == len(dataset.records)
    assert "privacy_edits" in store.list_versions(SIG)[1].metadata
    assert any(r.values["text"] in V_TEXTS for r in store.load(SIG).records)
    # the program version lost U's demo, kept V's, and still loads (its fingerprint was updated)
    spec = runtime.registry.get(SIG)
    module = VersionStore(home).load(spec, "v1")
    assert [d["text"] for _, p in module.named_predictors() for d in p.demos] == [V_TEXTS[0]]
    with runtime.db.begin() as conn:
        assert not conn.execute(select(feedback).where(feedback.c.request_id.in_(ids[U]))).all()
        assert not conn.execute(select(feedback_revisions).where(feedback_revisions.c.request_id.in_(ids[U]))).all()
        assert not conn.execute(select(request_index).where(request_index.c.user_pseudonym == pseudonym)).all()
        assert len(conn.execute(select(feedback).where(feedback.c.request_id.in_(ids[V]))).all()) == 2
        if state_db_url.startswith("postgresql"):  # VACUUM FULL rewrote the table: no dead tuples left behind
            assert conn.scalar(text("SELECT pg_relation_filenode('feedback')")) != before
    # audited by pseudonym only, with the counts; and recorded for restores
    entry = read_entries(home, action="privacy")[-1]
    assert entry["target"] == pseudonym and entry["details"]["telemetry"] == 3 and U not in json.dumps(entry)
    assert recorded_deletions(runtime.settings) == [pseudonym]
    again = delete_user_data(runtime.settings, U)  # idempotent
    assert again.status == "ok" and all(s.count == 0 for s in again.steps if s.step != "database_scrub")


def test_sqlite_file_and_wal_hold_no_deleted_bytes(make_runtime, tmp_path) -> None:
    runtime = make_runtime()
    issued = []  # the ids the service issued: stored in the request index, feedback and its revisions
    for _ in range(50):
        issued.append(runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U).request_id)
        runtime.feedback(issued[-1], 0.1, {"intent": "pin_blocked"})
        runtime.feedback(issued[-1], 0.2, {"intent": "age_limit"})  # a revision
    other = runtime.call(SIG, {"text": V_TEXTS[0]}, user_id=V).request_id
    runtime.flush()
    db_files = sorted((tmp_path / "home").glob("ratchet.db*"))
    pseudonym = user_pseudonym(runtime.settings, U).encode()

    def stored(needle: bytes) -> bool:
        return any(needle in p.read_bytes() for p in db_files if p.exists())

    assert all(stored(rid.encode()) for rid in issued) and stored(pseudonym)  # there (file or -wal) before
    report = delete_user_data(runtime.settings, U)
    assert report.step("feedback_db").count == 50 and report.step("feedback_db").details["revisions"] == 100
    assert report.step("database_scrub").details["wal_truncated"] is True
    assert not [rid for rid in issued if stored(rid.encode())] and not stored(pseudonym)
    assert stored(other.encode())
    wal = tmp_path / "home" / "ratchet.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def test_a_malformed_line_is_kept_and_counted_unless_it_names_the_user(make_runtime, tmp_path) -> None:
    runtime = make_runtime()
    mine = runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U).request_id
    runtime.flush()
    active = tmp_path / "home" / "telemetry" / ACTIVE_NAME
    pseudonym = user_pseudonym(runtime.settings, U)
    with active.open("ab") as fh:
        fh.write(b'{"torn": "someone else\'s half line\n')
        fh.write(b'{"record":"interaction","user_pseudonym":"' + pseudonym.encode() + b'","input":{"te\n')
        fh.write(json.dumps({"record": "feedback", "request_id": mine, "user_pseudonym": "f" * 32,
                             "signature": SIG, "score": 1, "timestamp_ms": 1}).encode() + b"\n")
    mode = active.stat().st_mode
    report = delete_user_data(runtime.settings, U)
    step = report.step("telemetry")
    assert step.count == 2 and step.details["malformed_kept"] == 1 and step.details["malformed_removed"] == 1
    remaining = active.read_bytes()
    assert b"someone else's half line" in remaining and pseudonym.encode() not in remaining
    assert b'"f' + b"f" * 31 + b'"' in remaining  # a record of another user with the same request id stays
    assert active.stat().st_mode == mode


def test_shadow_records_go_with_the_user_also_without_a_pseudonym(make_runtime, tmp_path) -> None:
    runtime = make_runtime()
    mine = runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U).request_id
    runtime.flush()
    pseudonym = user_pseudonym(runtime.settings, U)
    base = {"record": "interaction", "module_name": "m", "module_version": "v2", "signature": SIG,
            "output": {"intent": "card_arrival"}, "timestamp_ms": 1, "success": True, "arm": "shadow"}
    shadow = [{**base, "input": {"text": U_TEXTS[0]}, "request_id": mine, "user_pseudonym": pseudonym},
              {**base, "input": {"text": U_TEXTS[1]}, "request_id": mine},  # written before pseudonyms existed
              {**base, "input": {"text": V_TEXTS[0]}, "request_id": "v-1"}]
    with (tmp_path / "home" / "telemetry" / ACTIVE_NAME).open("ab") as fh:
        fh.writelines(json.dumps(r).encode() + b"\n" for r in shadow)
    report = delete_user_data(runtime.settings, U)
    assert report.step("shadow_records").count == 2 and report.step("telemetry").count == 1
    assert [r["input"]["text"] for r in _records(tmp_path / "home")] == [V_TEXTS[0]]


def test_a_crash_mid_rewrite_leaves_the_old_file_whole(make_runtime, tmp_path, monkeypatch) -> None:
    runtime = make_runtime()
    runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U)
    runtime.flush()
    _rotate(tmp_path / "home" / "telemetry")
    gz = next(p for p in (tmp_path / "home" / "telemetry").iterdir() if p.name.endswith(".gz"))
    before = gz.read_bytes()

    def crash(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("ratchet.store.atomic.os.replace", crash)
    report = delete_user_data(runtime.settings, U)
    assert report.status == "failed" and report.step("telemetry").status == "failed"
    assert "No space left" in report.step("telemetry").error
    assert report.step("shadow_records").status == "failed"  # counted from the same rewrite: unknown
    assert gz.read_bytes() == before and not [p for p in gz.parent.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert delete_user_data(runtime.settings, U).step("telemetry").count == 1  # run again: done


def test_restore_of_an_older_backup_reapplies_recorded_deletions(make_runtime, tmp_path) -> None:
    from ratchet.ops.backup import create_backup, restore_backup

    runtime = make_runtime()
    home = tmp_path / "home"
    _populate(runtime, home)
    w_text = "the wombatjubilee card went missing"
    runtime.call(SIG, {"text": w_text}, user_id="w-raw-id")
    runtime.flush()
    settings = runtime.settings.model_copy(update={"backup_key": None})
    archive = create_backup(settings, tmp_path / "backup.tar.gz", include_telemetry=True).path
    with tarfile.open(archive) as tar:
        assert "secrets/service.key" in tar.getnames()  # pseudonyms still match after a restore
    runtime.close()
    assert delete_user_data(settings, U).status == "ok" and delete_user_data(settings, "w-raw-id").status == "ok"
    assert not _leftovers([home], [*U_TEXTS, w_text])
    result = restore_backup(settings, archive, force=True, allow_unsigned=True)
    assert result.deletions == {"reapplied": 2, "status": "ok", "failed": []}
    assert not _leftovers([home], [*U_TEXTS, U, w_text]) and _leftovers([home], V_TEXTS)
    entries = read_entries(home, action="privacy")
    assert [e["action"] for e in entries] == ["privacy.delete_user", "privacy.delete_user", "privacy.reapply"]
    assert entries[2]["details"]["users"] == 2
    assert entries[2]["details"]["telemetry"] == 4  # the restored telemetry held U's 3 and W's 1 again
    assert reapply_deletions(settings).step("telemetry").count == 0


def test_run_files_and_archived_versions_are_rewritten(make_runtime, tmp_path) -> None:
    runtime = make_runtime()
    home = tmp_path / "home"
    _populate(runtime, home)
    archives = list((home / "training_data" / SIG / "archive").glob("*.tar.gz"))
    assert archives and all(a.stat().st_mode & 0o777 == 0o400 for a in archives)
    delete_user_data(runtime.settings, U)
    for archive in archives:
        assert archive.stat().st_mode & 0o777 == 0o400
        with tarfile.open(archive) as tar:
            names = tar.getnames()
            meta = json.load(tar.extractfile(names[0]))
            assert names[0].endswith("metadata.json") and meta["privacy_edits"][0]["removed"] >= 1
            dataset = tar.extractfile(names[1]).read()
            assert all(t.encode() not in dataset for t in U_TEXTS)
    assert all(os.stat(p).st_mode & 0o777 == 0o600 for p in (home / "runs").rglob("*.jsonl"))


def test_cli_delete_user_prints_each_step_and_json(make_runtime, tmp_path) -> None:
    from typer.testing import CliRunner

    from ratchet.cli.main import app

    runtime = make_runtime()
    runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U)
    runtime.close()
    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "{tmp_path / "home"}"\n')
    cli = CliRunner()
    shown = cli.invoke(app, ["--config", str(config), "privacy", "delete-user", U])
    assert shown.exit_code == 0, shown.output
    assert "telemetry" in shown.output and "request_index" in shown.output and U not in shown.output
    machine = cli.invoke(app, ["--config", str(config), "privacy", "delete-user", U, "--json"])
    body = json.loads(machine.output)
    assert machine.exit_code == 0 and body["status"] == "ok" and {"step", "status", "count"} <= set(body["steps"][0])


def test_http_delete_requires_admin_and_reports_steps(make_runtime, tmp_path, monkeypatch) -> None:
    from fastapi.testclient import TestClient

    from ratchet.auth.keys import create_key
    from ratchet.serve.app import create_app

    runtime = make_runtime()
    runtime.settings.auth.mode = "required"
    runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U)
    runtime.flush()
    admin = create_key(runtime.db, "admin", ["admin"], created_by="test")[0]
    reader = create_key(runtime.db, "reader", ["read"], created_by="test")[0]
    with TestClient(create_app(runtime=runtime)) as client:
        path = f"/v1/users/{U}/data"
        assert client.delete(path).status_code == 401
        assert client.delete(path, headers={"X-API-Key": reader}).status_code == 403
        answer = client.delete(path, headers={"X-API-Key": admin})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["status"] == "ok" and body["user"] == user_pseudonym(runtime.settings, U)
        assert {s["step"]: s["count"] for s in body["steps"]}["telemetry"] == 1
        monkeypatch.setattr("ratchet.privacy.service.purge_telemetry",
                            lambda *a, **k: (_ for _ in ()).throw(PermissionError(13, "denied", "/x/y/z.jsonl")))
        failed = client.delete(path, headers={"X-API-Key": admin})
        assert failed.status_code == 207 and failed.json()["status"] == "failed"
        assert "/x/y" not in failed.text  # no paths in public answers
    entry = read_entries(tmp_path / "home", action="privacy")[0]
    assert entry["actor"].startswith("key:admin/") and entry["source"] == "http"


def test_dataset_purge_keeps_content_hash_true(tmp_path) -> None:
    from ratchet.data.datasets.purge import purge_signature
    from ratchet.data.records import ExampleRecord
    from ratchet.programs import load_programs

    settings = Settings(home=tmp_path / "home")
    registry = load_programs(settings)
    store = DatasetStore(settings.home_dir, settings.data, registry=registry)
    records = [ExampleRecord(values={"text": t, "intent": "card_arrival"}, signature=SIG, source="telemetry",
                             metadata={"request_id": f"r{i}"}) for i, t in enumerate(U_TEXTS + V_TEXTS)]
    store.create(SIG, records, source="telemetry")
    result = purge_signature(store.root / SIG, SIG, lambda item: item["_meta"]["metadata"]["request_id"] == "r0",
                             edit={"deletion_id": "d1"})
    assert len(result.example_ids) == 1 and result.new_version and len(result.versions_rewritten) == 1
    old = store.load(SIG, result.versions_rewritten[0])
    assert len(old) == 4 and old.metadata["privacy_edits"][0]["deletion_id"] == "d1"
    new = store.load(SIG)
    assert new.version == result.new_version and new.metadata["parent"] == old.version and len(new) == 4
    raw = io.BytesIO((store.root / SIG / old.version / "provenance.jsonl").read_bytes()).read().splitlines()
    assert len(raw) == 4


def test_a_restore_whose_reapplication_fails_stands_and_says_so(make_runtime, tmp_path, monkeypatch) -> None:
    from ratchet.ops.backup import create_backup, restore_backup

    runtime = make_runtime()
    runtime.call(SIG, {"text": U_TEXTS[0]}, user_id=U)
    runtime.close()
    settings = runtime.settings.model_copy(update={"backup_key": None})
    archive = create_backup(settings, tmp_path / "backup.tar.gz", include_telemetry=True).path
    delete_user_data(settings, U)

    def broken(settings):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("ratchet.ops.restore.reapply_deletions", broken)
    result = restore_backup(settings, archive, force=True, allow_unsigned=True)
    assert result.deletions == {"reapplied": 0, "status": "failed", "failed": ["OSError: [Errno 5] Input/output error"]}
    assert _leftovers([tmp_path / "home"], U_TEXTS[:1])  # restored, not yet deleted again: `privacy reapply` does it
    monkeypatch.undo()
    assert reapply_deletions(settings).step("telemetry").count == 1
    assert not _leftovers([tmp_path / "home"], U_TEXTS[:1])


def test_a_dataset_rewrite_cut_short_is_finished_by_running_it_again(tmp_path, monkeypatch) -> None:
    from ratchet.data.datasets import purge
    from ratchet.data.records import ExampleRecord
    from ratchet.programs import load_programs

    settings = Settings(home=tmp_path / "home")
    store = DatasetStore(settings.home_dir, settings.data, registry=load_programs(settings))
    records = [ExampleRecord(values={"text": t, "intent": "card_arrival"}, signature=SIG, source="telemetry",
                             metadata={"request_id": f"r{i}"}) for i, t in enumerate(U_TEXTS + V_TEXTS)]
    version = store.create(SIG, records, source="telemetry").version
    store.add(SIG, [ExampleRecord(values={"text": "a later one", "intent": "pin_blocked"}, signature=SIG,
                                  source="manual")], source="manual")
    real = purge.atomic_write_bytes
    writes: list[str] = []

    def crash_on_dataset(path, data, **kwargs):  # the version's third and last file write fails
        if path.parent.name == version:
            writes.append(path.name)
            if len(writes) == 3:
                raise OSError(28, "No space left on device")
        real(path, data, **kwargs)

    def mine(item):
        return item["_meta"].get("metadata", {}).get("request_id") == "r0"

    monkeypatch.setattr(purge, "atomic_write_bytes", crash_on_dataset)
    with pytest.raises(OSError):
        purge.purge_signature(store.root / SIG, SIG, mine, edit={"deletion_id": "d1"})
    monkeypatch.undo()
    result = purge.purge_signature(store.root / SIG, SIG, mine, edit={"deletion_id": "d2"})
    assert version in result.versions_rewritten
    old = store.load(SIG, version)  # its hash check passes again
    assert [r.values["text"] for r in old.records] == U_TEXTS[1:] + V_TEXTS


def test_deletion_reaches_the_annotation_queue_triage_reports_and_imported_annotations(make_runtime,
                                                                                      tmp_path) -> None:
    """A user's failed calls were triaged, queued, annotated and imported: deleting the user removes their tasks and
    answers, their members of the triage report (Markdown too) and the golden and training examples made from
    them, and leaves another user's intact."""
    from datetime import UTC, datetime

    from ratchet.annotate import next_task, submit
    from ratchet.flywheel import IsoWeek, import_annotations, queue_tasks, run_triage
    from ratchet.store.tables import annotation_tasks

    runtime = make_runtime()
    home = tmp_path / "home"
    for user, texts in ((U, U_TEXTS[:2]), (V, V_TEXTS[:1])):
        for text_ in texts:
            runtime.feedback(runtime.call(SIG, {"text": text_}, user_id=user).request_id, 0.0)
    runtime.flush()
    week = IsoWeek(*datetime.now(UTC).isocalendar()[:2])
    db = runtime.db
    report, _, _ = run_triage(home, db, week)
    assert queue_tasks(db, report, double_share=0.0)[SIG]["created"] == 3
    while (task := next_task(db, annotator="ann")) is not None:
        submit(db, runtime.registry, task.task_id, "ann", set_values={"intent": "lost_or_stolen_card"})
    imported = import_annotations(runtime.settings, runtime.registry, db, week, golden_share=0.5)
    assert imported.signatures[SIG].corrected == 3
    assert len(_leftovers([home], U_TEXTS[:2])) >= 4  # telemetry, triage .json and .md, golden or training

    report = delete_user_data(runtime.settings, U)
    assert report.status == "ok", report.to_dict()
    assert report.step("annotation_queue").count == 2 and report.step("annotation_queue").details["answers"] == 2
    assert report.step("triage_reports").count == 2
    assert report.step("triage_reports").details["files"] == [f"triage_{week}.json"]
    assert not _leftovers([home, tmp_path / "state"], [*U_TEXTS, U]), "the user's text is still stored"
    with db.begin() as conn:
        assert [json.loads(r.inputs)["text"] for r in conn.execute(select(annotation_tasks))] == V_TEXTS[:1]
    kept = json.loads((home / "reports" / f"triage_{week}.json").read_text())
    members = [m for c in kept["signatures"][SIG]["clusters"] for m in c["members"]]
    assert [m["inputs"]["text"] for m in members] == V_TEXTS[:1]
    assert all(c["size"] == len(c["members"]) for c in kept["signatures"][SIG]["clusters"])
    assert V_TEXTS[0] in (home / "reports" / f"triage_{week}.md").read_text()
    terms = {t for c in kept["signatures"][SIG]["clusters"] for t in c["terms"]}
    assert terms and all(t in V_TEXTS[0] for t in terms)
    assert {q["cluster"] for q in kept["queue"]} == {c["id"] for c in kept["signatures"][SIG]["clusters"]}


# -- several hosts on one PostgreSQL: the shared telemetry sink and shared program versions -------------------------

def test_deletion_on_any_host_reaches_the_shared_sink_and_every_hosts_program_versions(tmp_path, postgres_url,
                                                                                       monkeypatch) -> None:
    from ratchet.store.tables import program_versions, telemetry_records
    from ratchet.telemetry.database import telemetry_view

    monkeypatch.setenv("RATCHET_SECRET_KEY", "k" * 48)  # every host shares the service secret

    def host(name: str) -> Runtime:
        settings = Settings(home=tmp_path / name, database_url=postgres_url)
        settings.telemetry.sampling_rate = 1.0
        settings.telemetry.sink = "database"
        settings.serve.outcome_flush_interval_s = 0.1
        return Runtime(settings, lms=LMBundle.for_lm(_lm(), CompletionAdapter()))

    a, b = host("a"), host("b")
    try:
        mine = [a.call(SIG, {"text": U_TEXTS[0]}, user_id=U).request_id,
                b.call(SIG, {"text": U_TEXTS[1]}, user_id=U).request_id]
        theirs = a.call(SIG, {"text": V_TEXTS[0]}, user_id=V).request_id
        a.flush()  # A's request index reaches the database
        b.feedback(mine[0], 1.0)  # feedback on host B for a call host A served
        a.feedback(theirs, 1.0)
        for runtime in (a, b):
            runtime.flush()
        module = a.registry.get(SIG).build()
        for _, predictor in module.named_predictors():
            predictor.demos = [dspy.Example(text=U_TEXTS[0], intent="card_arrival"),
                               dspy.Example(text=V_TEXTS[0], intent="card_arrival")]
        a.versions.save(a.registry.get(SIG), module, lm="scripted/t", adapter="completion")
        assert b.versions.exists(SIG, "v1")  # host B cached it from the database
        # Nothing on the hosts' disks: the sink holds the records; a reader on any host sees them all.
        assert not [p for name in "ab" for p in (tmp_path / name / "telemetry").iterdir()]
        with telemetry_view(b.settings, b.db) as view:
            seen = [json.loads(line) for path in iter_log_files(view) for line in path.read_text().splitlines()]
        assert sorted(r["request_id"] for r in seen if r["record"] == "interaction") == sorted([*mine, theirs])
        assert len([r for r in seen if r["record"] == "feedback"]) == 2
        assert not list(tmp_path.glob("*/.telemetry-view-*"))  # the view is gone after reading

        # The deletion runs on a third host (the cycle's), which served nothing and cached nothing.
        c = Settings(home=tmp_path / "c", database_url=postgres_url)
        c.telemetry.sink = "database"
        report = delete_user_data(c, U)
        assert report.status == "ok", report.to_dict()
        assert report.step("telemetry").count == 2 and report.step("feedback_telemetry").count == 1
        assert report.step("program_demos").count == 1
        with a.db.begin() as conn:
            lines = list(conn.scalars(select(telemetry_records.c.line)))
            state = conn.scalar(select(program_versions.c.state))
        assert len(lines) == 2 and not [line for line in lines if U_TEXTS[0] in line or mine[0] in line]
        assert U_TEXTS[0] not in state and V_TEXTS[0] in state
        # Each serving host's cached copy follows the database's new fingerprint at its next reading.
        for runtime in (a, b):
            runtime.follower.refresh()
            assert not _leftovers([runtime.settings.home_dir], [*U_TEXTS, U])
            loaded = runtime.versions.load(runtime.registry.get(SIG), "v1")
            assert [d["text"] for _, p in loaded.named_predictors() for d in p.demos] == [V_TEXTS[0]]
    finally:
        a.close()
        b.close()
