"""The audit log: a clean chain verifies; every way of tampering with it is found and named; writers in several
processes keep it gapless; operator and controller actions, dataset writes, backups and the CLI leave entries."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from test_state_changes import _count_candidate_requests as serve_requests
from test_state_changes import _settings as rollout_settings
from typer.testing import CliRunner

from ratchet.audit import (
    GENESIS,
    AuditLog,
    audit,
    audit_context,
    audited,
    entry_hash,
    operator_actor,
    read_entries,
    verify_audit,
)
from ratchet.cli.main import app
from ratchet.config import Settings
from ratchet.errors import IllegalTransitionError
from ratchet.evaluation import fewshot_program
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController

SIG = "classify_intent"
DAY = 86400.0
T0 = datetime(2025, 6, 1, 9, 0, tzinfo=UTC).timestamp()
runner = CliRunner()


# -- helpers ---------------------------------------------------------------------------------------
def write_days(home: Path, per_day: tuple[int, ...] = (4, 3, 5), actor: str = "operator:alice@host") -> list[Path]:
    """Entries over consecutive days (the clock moved by hand); returns the daily files, oldest first."""
    clock = [T0]
    n = 0
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("ratchet.audit.log.time", type("Clock", (), {"time": staticmethod(lambda: clock[0])}))
        for day, count in enumerate(per_day):
            for i in range(count):
                clock[0] = T0 + day * DAY + i * 60
                n += 1
                audit(home, "experiment.start", target=f"exp_{n}", actor=actor, source="cli",
                      details={"n": n})
    return AuditLog(home).files()


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def rewrite(path: Path, new_lines: list[bytes]) -> None:
    path.write_bytes(b"".join(new_lines))


def problems(home: Path) -> list[tuple[str, str, int | None]]:
    report = verify_audit(home)
    return [(p.kind, p.file, p.line) for p in report.errors]


def forged(entry: dict, **changes: object) -> bytes:
    """``entry`` changed and re-hashed (an attacker who knows the format)."""
    new = {**entry, **changes}
    new["hash"] = entry_hash(new)
    return (json.dumps(new, separators=(",", ":")) + "\n").encode()


# -- the chain -------------------------------------------------------------------------------------
def test_a_clean_log_verifies_and_chains_across_daily_files(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    assert [f.name for f in files] == ["audit-2025-06-01.jsonl", "audit-2025-06-02.jsonl", "audit-2025-06-03.jsonl"]
    report = verify_audit(tmp_path)
    assert report.ok and report.problems == [] and report.entries == 12 and report.last_seq == 12
    assert [(f.entries, f.first_seq, f.last_seq) for f in report.files] == [(4, 1, 4), (3, 5, 7), (5, 8, 12)]
    first = json.loads(lines(files[0])[0])
    assert first["prev_hash"] == GENESIS and first["seq"] == 1 and first["at"] == "2025-06-01T09:00:00.000000Z"
    day2 = json.loads(lines(files[1])[0])
    assert day2["prev_hash"] == json.loads(lines(files[0])[-1])["hash"]  # a day chains to the day before
    assert report.head == {"seq": 12, "hash": report.last_hash, "file": files[2].name,
                           "at": json.loads(lines(files[2])[-1])["at"]}
    assert verify_audit(tmp_path / "nothing-yet").ok


def test_an_edited_entry_is_found_with_its_file_and_line(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    content = lines(files[1])
    content[1] = content[1].replace(b'"outcome":"ok"', b'"outcome":"refused"')
    rewrite(files[1], content)
    assert problems(tmp_path) == [("edited", "audit-2025-06-02.jsonl", 2)]
    assert "edited" in str(verify_audit(tmp_path).errors[0])


def test_an_edited_entry_with_a_recomputed_hash_breaks_the_chain(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    content = lines(files[1])
    content[1] = forged(json.loads(content[1]), actor="operator:mallory@host")
    rewrite(files[1], content)
    assert problems(tmp_path) == [("inserted", "audit-2025-06-02.jsonl", 3)]  # the next entry no longer chains


def test_a_removed_entry_is_found(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    content = lines(files[2])
    del content[2]
    rewrite(files[2], content)
    found = verify_audit(tmp_path).errors
    assert [(p.kind, p.file, p.line) for p in found] == [("removed", "audit-2025-06-03.jsonl", 3)]
    assert "entry 10 is missing before it" in found[0].message


def test_an_inserted_entry_is_found(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    content = lines(files[0])
    previous = json.loads(content[1])
    content.insert(2, forged(previous, seq=3, prev_hash=previous["hash"], target="backdated"))  # chains to seq 2
    rewrite(files[0], content)
    assert problems(tmp_path) == [("inserted", "audit-2025-06-01.jsonl", 4),  # which of the two seq 3 is forged
                                  ("inserted", "audit-2025-06-01.jsonl", 5)]  # cannot be told: both are named
    duplicated = lines(files[1])
    rewrite(files[1], [*duplicated[:2], duplicated[1], *duplicated[2:]])  # a verbatim copy of an entry
    assert ("inserted", "audit-2025-06-02.jsonl", 3) in problems(tmp_path)


def test_reordered_entries_are_found(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    content = lines(files[2])
    content[1], content[2] = content[2], content[1]
    rewrite(files[2], content)
    assert problems(tmp_path) == [("removed", "audit-2025-06-03.jsonl", 2), ("inserted", "audit-2025-06-03.jsonl", 3)]


def test_a_truncated_file_is_found_and_later_appends_chain_past_it(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    data = files[2].read_bytes()
    files[2].write_bytes(data[:-40])  # the last line cut
    found = verify_audit(tmp_path).errors
    assert (found[0].kind, found[0].file, found[0].line) == ("truncated", "audit-2025-06-03.jsonl", 5)
    assert "cut off" in found[0].message
    assert any(p.kind == "cut_off" for p in found)  # head.json still names seq 12
    # a writer after a crash mid-line chains to the last whole entry (today's file: the torn line stays as it is)
    entry = audit(tmp_path, "experiment.pause", target="exp_1")
    assert entry is not None and entry["seq"] == 12 and entry["prev_hash"] == json.loads(lines(files[2])[3])["hash"]
    assert problems(tmp_path) == [("truncated", "audit-2025-06-03.jsonl", 5)]
    # in the same file, the writer ends the torn line first so its own entry stays whole
    today = AuditLog(tmp_path).files()[-1]
    today.write_bytes(today.read_bytes() + b'{"v":1,"seq":13,"at"')
    entry = audit(tmp_path, "experiment.resume", target="exp_1")
    assert entry is not None and entry["seq"] == 13
    assert problems(tmp_path) == [("truncated", "audit-2025-06-03.jsonl", 5), ("unreadable", today.name, 2)]


def test_a_removed_last_entry_and_a_deleted_newest_file_are_found_through_the_head(
        tmp_path: Path) -> None:
    files = write_days(tmp_path)
    rewrite(files[2], lines(files[2])[:-1])
    found = verify_audit(tmp_path).errors
    assert [(p.kind, p.file) for p in found] == [("cut_off", "head.json")]
    assert "log ends at seq 11" in found[0].message
    files[2].unlink()
    assert [p.kind for p in verify_audit(tmp_path).errors] == ["cut_off"]
    (tmp_path / "audit" / "head.json").unlink()
    assert [p.kind for p in verify_audit(tmp_path).errors] == ["head"]


def test_a_deleted_daily_file_is_found(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    files[1].unlink()
    found = verify_audit(tmp_path).errors
    assert [(p.kind, p.file, p.line) for p in found] == [("deleted_file", "audit-2025-06-03.jsonl", 1)]
    assert "audit-2025-06-01.jsonl ends at seq 4" in found[0].message and "5–7 are missing" in found[0].message


def test_a_file_from_another_chain_is_found(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    other = write_days(tmp_path / "other", actor="operator:mallory@host")  # same seqs and days, a different chain
    files[1].write_bytes(other[1].read_bytes())
    assert problems(tmp_path) == [("removed", "audit-2025-06-02.jsonl", 1), ("removed", "audit-2025-06-03.jsonl", 1)]
    assert "does not chain to the last entry of audit-2025-06-01.jsonl" in verify_audit(tmp_path).errors[0].message


def test_a_garbled_line_is_named(tmp_path: Path) -> None:
    files = write_days(tmp_path)
    content = lines(files[0])
    content[1] = b"not json at all\n"
    rewrite(files[0], content)
    assert problems(tmp_path) == [("unreadable", "audit-2025-06-01.jsonl", 2)]


def test_files_are_owner_only_and_entries_small(tmp_path: Path) -> None:
    entry = audit(tmp_path, "keys.create", target="ci-bot", details={
        "roles": ["predict", "feedback"], "note": "x" * 1000, "nested": {"a": 1}, "many": list(range(50))})
    assert entry is not None
    assert len(entry["details"]["note"]) == 200 and entry["details"]["nested"] == '{"a":1}'
    assert entry["details"]["many"][-1] == "…" and len(entry["details"]["many"]) == 21
    huge = audit(tmp_path, "keys.create", details={f"k{i}": "v" * 150 for i in range(30)})
    assert huge is not None and huge["details"]["truncated"] is True
    directory = tmp_path / "audit"
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()} == {0o600}
    with pytest.raises(ValueError, match="dotted"):
        audit(tmp_path, "Keys Create")
    with pytest.raises(ValueError, match="outcome"):
        audit(tmp_path, "keys.create", outcome="maybe")
    assert verify_audit(tmp_path).ok


def test_actor_and_source_come_from_the_context(tmp_path: Path) -> None:
    entry = audit(tmp_path, "experiment.pause", actor="operator")
    assert entry is not None and entry["actor"] == operator_actor() and entry["actor"].startswith("operator:")
    with audit_context(actor="api-key:ci-bot", source="http", client="10.0.0.7"):
        entry = audit(tmp_path, "auth.failure", outcome="refused", reason="unknown key")
    assert entry is not None and (entry["actor"], entry["source"], entry["client"]) == (
        "api-key:ci-bot", "http", "10.0.0.7")


def test_audited_records_ok_refused_failed_and_nothing_when_skipped(tmp_path: Path) -> None:
    with audited(tmp_path, "dataset.archive", target="a") as note:
        note.details["versions"] = ["v1"]
    with pytest.raises(IllegalTransitionError), audited(tmp_path, "experiment.promote", target="b"):
        raise IllegalTransitionError("cannot promote a rolled-back experiment")
    with pytest.raises(OSError), audited(tmp_path, "backup.create", target="c"):
        raise OSError("disk full")
    with audited(tmp_path, "dataset.archive", target="d") as note:
        note.skip = True
    entries = read_entries(tmp_path)
    assert [(e["target"], e["outcome"]) for e in entries] == [("a", "ok"), ("b", "refused"), ("c", "failed")]
    assert entries[1]["reason"] == "IllegalTransitionError: cannot promote a rolled-back experiment"
    assert entries[0]["details"] == {"versions": ["v1"]}


def test_a_log_that_cannot_be_written_never_hides_the_action(tmp_path: Path) -> None:
    (tmp_path / "audit").write_text("a file where the directory should be")
    assert audit(tmp_path, "experiment.pause") is None
    with audited(tmp_path, "experiment.pause") as note:
        note.reason = "still happens"


def _append_many(home: str, worker: int, n: int) -> None:
    for i in range(n):
        audit(Path(home), "experiment.advance", target=f"w{worker}_{i}", actor=f"controller:test:{worker}")


def test_writers_in_several_processes_keep_one_gapless_chain(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_append_many, args=(str(tmp_path), w, 40)) for w in range(4)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=120)
        assert process.exitcode == 0
    report = verify_audit(tmp_path)
    assert report.ok, [str(p) for p in report.problems]
    entries = read_entries(tmp_path)
    assert [e["seq"] for e in entries] == list(range(1, 161))
    assert {e["target"] for e in entries} == {f"w{w}_{i}" for w in range(4) for i in range(40)}


def test_list_filters_by_day_and_action_prefix(tmp_path: Path) -> None:
    write_days(tmp_path)
    audit(tmp_path, "dataset.create", target=SIG)
    assert len(read_entries(tmp_path, since=datetime(2025, 6, 2).date())) == 9
    assert [e["action"] for e in read_entries(tmp_path, action="dataset")] == ["dataset.create"]
    assert read_entries(tmp_path, action="data") == []  # a prefix is a whole dotted part
    assert [e["seq"] for e in read_entries(tmp_path, limit=2)] == [12, 13]


# -- wired into the actions ------------------------------------------------------------------------
@pytest.fixture
def rollout(tmp_path: Path, state_db_url: str) -> RolloutController:
    settings = rollout_settings(tmp_path / "home", state_db_url)
    registry = load_programs(settings)
    spec = registry.get(SIG)
    VersionStore(settings.home_dir).save(spec, fewshot_program(spec, 2), lm="m", adapter="a")  # v1
    controller = RolloutController(settings, registry)
    yield controller
    controller.db.dispose()


def test_rollout_actions_and_controller_decisions_are_audited(rollout: RolloutController) -> None:
    home = rollout.settings.home_dir
    rollout.start(SIG, "v1", experiment_id="exp_1", stages=[10, 25, 50, 100])
    rollout.pause("exp_1", reason="looking", actor="operator:bob@desk")
    rollout.resume("exp_1")
    serve_requests(rollout, 3, "exp_1")
    assert rollout.check("exp_1", actor="controller:host:1").action == "advance"
    rollout.rollback("exp_1", reason="manual")
    with pytest.raises(IllegalTransitionError):
        rollout.promote("exp_1")
    rollout.start(SIG, "v1", experiment_id="exp_2", stages=[50, 100])
    rollout.promote("exp_2", reason="good")
    rollout.start(SIG, "base", experiment_id="exp_3", baseline="v1", stages=[50, 100])
    rollout.rollback_all(reason="incident")
    got = [(e["action"], e["target"], e["outcome"]) for e in read_entries(home)]
    assert got == [
        ("experiment.start", "exp_1", "ok"), ("experiment.pause", "exp_1", "ok"),
        ("experiment.resume", "exp_1", "ok"), ("experiment.advance", "exp_1", "ok"),
        ("experiment.rollback", "exp_1", "ok"), ("experiment.promote", "exp_1", "refused"),
        ("experiment.start", "exp_2", "ok"), ("experiment.promote", "exp_2", "ok"),
        ("experiment.start", "exp_3", "ok"), ("experiment.rollback", "exp_3", "ok"),
        ("experiment.rollback_all", None, "ok"),
    ]
    entries = read_entries(home)
    assert entries[1]["actor"] == "operator:bob@desk" and entries[1]["reason"] == "looking"
    assert entries[2]["actor"] == operator_actor()  # the library's bare "operator" names the person
    advance = entries[3]
    assert (advance["actor"], advance["source"]) == ("controller:host:1", "controller")
    assert advance["details"] == {"signature": SIG, "from_status": "running", "from_percent": 10, "to_percent": 25}
    assert entries[5]["reason"].startswith("IllegalTransitionError")
    assert entries[7]["details"]["candidate"] == "v1" and entries[10]["details"]["experiments"] == ["exp_3"]
    assert verify_audit(home).ok


def test_programs_promote_is_audited_when_done_and_when_refused(rollout: RolloutController, tmp_path: Path) -> None:
    home = rollout.settings.home_dir
    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "{home}"\ndatabase_url = "{rollout.settings.database_url}"\n')
    rollout.start(SIG, "v1", experiment_id="exp_1", stages=[50, 100])
    refused = runner.invoke(app, ["--config", str(config), "programs", "promote", SIG, "v1"])
    assert refused.exit_code == 2
    rollout.rollback("exp_1", reason="for the test")
    done = runner.invoke(app, ["--config", str(config), "programs", "promote", SIG, "v1", "--reason", "hotfix"])
    assert done.exit_code == 0, done.stderr
    promotions = read_entries(home, action="programs.promote")
    assert [(e["outcome"], e["source"]) for e in promotions] == [("refused", "cli"), ("ok", "cli")]
    assert "live experiment" in promotions[0]["reason"]
    assert promotions[1]["details"] == {"version": "v1", "from_version": "base"}
    assert promotions[1]["actor"] == operator_actor() and promotions[1]["reason"] == "hotfix"


def test_dataset_create_add_and_archive_are_audited(tmp_path: Path) -> None:
    from ratchet.config.settings import DataSettings
    from ratchet.data.datasets import DatasetStore
    from ratchet.data.records import ExampleRecord
    from ratchet.errors import DataError

    store = DatasetStore(tmp_path, DataSettings(), registry=load_programs(Settings()))
    banking = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"
    rows = [json.loads(line) for line in banking.read_text().splitlines()[:8]]
    records = [ExampleRecord(values=r, signature=SIG, source="t", quality=80.0, difficulty="easy") for r in rows]
    with audit_context(actor="cycle:run_1"):
        first = store.create(SIG, records[:4], source="telemetry")
    store.add(SIG, records[4:], source="git_mining")
    with pytest.raises(DataError):
        store.add(SIG, records[4:], source="git_mining")  # nothing new: refused
    assert store.archive(SIG, older_than_days=0, keep=1, dry_run=True)
    assert store.archive(SIG, older_than_days=0, keep=1)
    assert store.archive(SIG, older_than_days=0, keep=1) == []  # nothing to do: nothing recorded
    entries = read_entries(tmp_path)
    assert [(e["action"], e["outcome"]) for e in entries] == [
        ("dataset.create", "ok"), ("dataset.add", "ok"), ("dataset.add", "refused"), ("dataset.archive", "ok")]
    assert entries[0]["actor"] == "cycle:run_1"
    assert entries[0]["details"] == {"source": "telemetry", "version": first.version, "parent": None,
                                     "examples": 4, "added": 4, "duplicates": 0, "rejected": 0}
    assert entries[3]["details"]["versions"] == [first.version]
    text = "\n".join(p.read_text() for p in (tmp_path / "audit").glob("*.jsonl"))
    assert all(json.dumps(r["text"])[1:-1] not in text for r in rows)  # never what users typed


def test_backup_holds_the_log_and_restore_never_rewinds_a_homes_own_log(tmp_path: Path) -> None:
    from ratchet.ops.backup import create_backup, restore_backup, verify_backup
    from ratchet.ops.cleanup import run_cleanup

    settings = Settings(home=tmp_path / "home", backup_key="audit-test-backup-key-0123")
    audit(settings, "keys.create", target="ci-bot")
    old = AuditLog(settings.home_dir).files()[0]
    os.utime(old, (time.time() - 3650 * DAY, time.time() - 3650 * DAY))
    run_cleanup(settings)
    assert old.is_file()  # retention never touches the audit log
    archive = tmp_path / "b.tar.gz"
    create_backup(settings, archive)
    names = {m["path"] for m in verify_backup(archive, key="audit-test-backup-key-0123")["members"]}
    assert {f"audit/{old.name}", "audit/head.json"} <= names and "audit/.lock" not in names
    assert [e["action"] for e in read_entries(settings.home_dir)] == ["keys.create", "cleanup.run", "backup.create"]

    fresh = tmp_path / "fresh"
    restore_backup(settings, archive, home=fresh)
    assert [e["action"] for e in read_entries(fresh)] == ["keys.create", "cleanup.run", "restore.apply"]
    assert verify_audit(fresh).ok  # the backup's log, continued by the restore

    restore_backup(settings, archive, home=settings.home_dir, force=True)  # over the live home
    actions = [e["action"] for e in read_entries(settings.home_dir)]
    assert actions == ["keys.create", "cleanup.run", "backup.create", "restore.apply"]  # not rewound
    assert verify_audit(settings.home_dir).ok

    with pytest.raises(Exception, match="not empty"):
        restore_backup(settings, archive, home=fresh)
    assert read_entries(fresh)[-1]["outcome"] == "refused"
    empty = tmp_path / "empty"
    with pytest.raises(Exception, match=r"No such file|not found|cannot"):
        restore_backup(settings, tmp_path / "missing.tar.gz", home=empty)
    assert not empty.exists() or not any(empty.iterdir())  # a failed restore leaves an empty home empty


def test_the_audit_check_raises_a_critical_alert_on_a_broken_chain(tmp_path: Path) -> None:
    from ratchet.monitor.checks import CHECKS, run_checks

    settings = Settings(home=tmp_path / "home")
    assert "audit" in CHECKS
    files = write_days(settings.home_dir)
    run = run_checks(settings, ["audit"], None)
    assert run.exit_code == 0 and run.results[0].summary["entries"] == 12
    content = lines(files[0])
    del content[1]
    rewrite(files[0], content)
    run = run_checks(settings, ["audit"], None)
    (alert,) = run.alerts
    assert (alert.level, alert.title, run.exit_code) == ("critical", "Audit Log Broken", 3)
    assert "audit-2025-06-01.jsonl:2" in alert.message


def test_audit_cli_verify_and_list(tmp_path: Path) -> None:
    home = tmp_path / "home"
    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "{home}"\n')
    files = write_days(home)
    ok = runner.invoke(app, ["--config", str(config), "audit", "verify"])
    assert ok.exit_code == 0 and "12 entries in 3 daily file(s)" in ok.stdout and "chain intact" in ok.stdout
    listed = runner.invoke(app, ["--config", str(config), "audit", "list", "--since", "2025-06-03", "--json"])
    assert listed.exit_code == 0 and [e["seq"] for e in json.loads(listed.stdout)] == [8, 9, 10, 11, 12]
    table = runner.invoke(app, ["--config", str(config), "audit", "list", "--action", "experiment"])
    assert table.exit_code == 0 and "12 audit entries" in table.stdout and "exp_12" in table.stdout
    bad = runner.invoke(app, ["--config", str(config), "audit", "list", "--since", "June"])
    assert bad.exit_code == 2
    content = lines(files[1])
    content[0] = content[0].replace(b"exp_5", b"exp_X")
    rewrite(files[1], content)
    broken = runner.invoke(app, ["--config", str(config), "audit", "verify"])
    assert broken.exit_code == 1 and "audit-2025-06-02.jsonl:1" in broken.stderr and "BROKEN" in broken.stdout
    as_json = runner.invoke(app, ["--config", str(config), "audit", "verify", "--json"])
    report = json.loads(as_json.stdout)
    assert as_json.exit_code == 1 and report["ok"] is False and report["problems"][0]["kind"] == "edited"
    assert report["problems"][0]["file"] == "audit-2025-06-02.jsonl" and report["problems"][0]["line"] == 1
