"""`ratchet cleanup` on a crafted home: dry run first (nothing changes), then the real thing."""

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from diskcache import FanoutCache
from sqlalchemy import func, select
from typer.testing import CliRunner

from ratchet.cli.main import app
from ratchet.config import load_settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.lm.cache import dspy_cache_dir, dspy_cache_lock_path
from ratchet.ops.cleanup import run_cleanup
from ratchet.programs import load_programs
from ratchet.store.canaries import CanaryRun, record_canary_runs
from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import OutcomeRecorder
from ratchet.store.tables import arm_errors, arm_latency_buckets, arm_outcomes, canary_runs, feedback, request_index

DAY = 86400.0
NOW = time.time()
SIG = "classify_intent"
runner = CliRunner()


def age(path: Path, days: float) -> None:
    stamp = NOW - days * DAY
    os.utime(path, (stamp, stamp), follow_symlinks=False)


def tree(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.startswith("ratchet.db"):
            continue  # the database is compared by its rows
        if path.is_symlink():
            out[rel] = "-> " + os.readlink(path)
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            out[rel] = "dir"
    return out


def rows(db: StateDB) -> dict[str, int]:
    with db.begin() as conn:
        return {t.name: conn.execute(select(func.count()).select_from(t)).scalar_one()
                for t in (request_index, feedback, arm_outcomes, arm_errors, arm_latency_buckets, canary_runs)}


def age_all(directory: Path, days: float) -> None:
    """Age a DSPy cache directory, everything under it and its lock file."""
    for path in [*directory.rglob("*"), directory, dspy_cache_lock_path(directory.parents[1])]:
        if path.exists():
            age(path, days)


def old_dspy_cache(home: Path, days: float) -> Path:
    """A real DSPy disk cache (diskcache FanoutCache) under the home, last written ``days`` ago."""
    directory = dspy_cache_dir(home)
    cache = FanoutCache(str(directory), shards=4)
    cache.set("key", {"outputs": ["an unredacted answer"]})
    cache.close()
    age_all(directory, days)
    return directory


def make_home(tmp_path: Path):
    (tmp_path / "ratchet.toml").write_text('home = "home"\n[data]\narchive_after_days = 90\nkeep_versions = 1\n'
                                           "[retention]\nruns_days = 30\nalerts_days = 30\nrequest_index_days = 7\n"
                                           "counters_days = 100\n[telemetry]\nmax_age_days = 60\n")
    settings = load_settings(tmp_path / "ratchet.toml")
    home = settings.home_dir
    registry = load_programs(settings)

    telemetry = home / "telemetry"
    telemetry.mkdir(parents=True)
    for name, days in (("interactions.jsonl", 200), ("interactions-20260101T000000-1-0.jsonl.gz", 100),
                       ("interactions-20260301T000000-1-1.jsonl", 90),
                       ("interactions-20261101T000000-1-2.jsonl.gz", 5)):
        (telemetry / name).write_bytes(b'{"x": 1}\n' * 10)
        age(telemetry / name, days)
    (telemetry / ".interactions-20260301T000000-1-1.jsonl.gz.7.8.tmp").write_bytes(b"crash")  # a crashed gzip
    age(telemetry / ".interactions-20260301T000000-1-1.jsonl.gz.7.8.tmp", 1)

    store = DatasetStore(home, settings.data, registry=registry)
    rows_ = [json.loads(line) for line in (Path(__file__).parents[2] / "src/ratchet/examples/data/banking77/train.jsonl"
                                           ).read_text().splitlines()[:12]]
    versions = []
    for i in range(3):
        records = [ExampleRecord(values=r, signature=SIG, source="test", quality=80.0, difficulty="easy")
                   for r in rows_[i * 4:(i + 1) * 4]]
        versions.append(store.add(SIG, records, source="test").version)
    for version in versions[:2]:  # two old versions: both archived (keep_versions = 1 keeps the newest)
        meta_path = home / "training_data" / SIG / version / "metadata.json"
        meta = json.loads(meta_path.read_text())
        meta["created"] = "2026-01-01T00:00:00+00:00"
        meta_path.chmod(0o644)
        meta_path.write_text(json.dumps(meta))
    stale = home / "training_data" / SIG / ".tmp-deadbeef"
    stale.mkdir()
    (stale / "dataset.json").write_text("{}")
    age(stale, 1)
    unregistered = home / "training_data" / "someone_elses_program"
    unregistered.mkdir()

    runs = home / "runs"
    for name in ("run_20260101_020000", "run_20260201_020000", time.strftime("run_%Y%m%d_%H%M%S", time.gmtime(NOW))):
        (runs / name).mkdir(parents=True)
        (runs / name / "orchestration_summary.json").write_text('{"success": true}')

    alerts = home / "alerts"
    alerts.mkdir()
    for name, days in (("alert_warning_20260101_000000_abcd1234.json", 60),
                       ("alert_error_20261120_000000_bcde2345.json", 5), ("README.txt", 60)):
        (alerts / name).write_text('{"level": "warning"}')
        age(alerts / name, days)

    old_dspy_cache(home, days=40)  # retention.dspy_cache_days defaults to 30

    db = StateDB.connect(settings)
    with OutcomeRecorder(db) as recorder:
        for days in (200, 150, 1):
            at = NOW - days * DAY
            recorder.record(SIG, "base", "baseline", latency_s=0.1, success=days != 150, error_type="timeout", at=at)
            recorder.index_request(f"req-{days}", SIG, "base", "baseline", at=at)
    for days in (10, 1):
        record_feedback(db, f"req-{days}", 1.0, at=NOW - days * DAY)
    record_canary_runs(db, [CanaryRun(SIG, "base", NOW - days * DAY, "p1", 1, 1.0, scores={"a": 1.0})
                            for days in (120, 95, 1)])  # retention.canary_days defaults to 90
    return settings, registry, db, versions


def test_dry_run_then_cleanup(tmp_path: Path) -> None:
    settings, registry, db, versions = make_home(tmp_path)
    home = settings.home_dir
    before_tree, before_rows = tree(home), rows(db)

    dry = run_cleanup(settings, registry, dry_run=True, db=db, now=NOW)
    assert tree(home) == before_tree and rows(db) == before_rows  # nothing changed
    counts = {step.name: step.count for step in dry.steps}
    assert counts == {"telemetry": 3, "datasets": 2, "dataset_temp": 1, "runs": 2, "alerts": 1, "eval_reports": 0,
                      "dspy_cache": 1, "request_index": 2, "feedback": 1, "counters": 5, "canary_runs": 2}
    assert dry.step("dspy_cache").items == ["cache/dspy"] and dry.step("dspy_cache").bytes > 0
    assert dry.step("telemetry").bytes == 185 and dry.step("alerts").bytes > 0 and dry.step("runs").bytes > 0
    assert dry.step("datasets").items == [f"{SIG}/{v}" for v in versions[:2]]
    assert any("someone_elses_program" in note for note in dry.step("datasets").skipped)
    assert not dry.errors

    real = run_cleanup(settings, registry, db=db, now=NOW)
    assert {step.name: step.count for step in real.steps} == counts
    assert {step.name: step.bytes for step in real.steps} == {step.name: step.bytes for step in dry.steps}
    telemetry = sorted(p.name for p in (home / "telemetry").iterdir())
    assert telemetry == ["interactions-20261101T000000-1-2.jsonl.gz", "interactions.jsonl"]  # never the active file
    assert not dspy_cache_dir(home).exists()
    sig_dir = home / "training_data" / SIG
    assert sorted(p.name for p in (sig_dir / "archive").iterdir()) == [f"{v}.tar.gz" for v in versions[:2]]
    assert not (sig_dir / versions[0]).exists() and (sig_dir / versions[2]).is_dir()
    assert os.readlink(sig_dir / "latest") == versions[2]
    assert not (sig_dir / ".tmp-deadbeef").exists()
    assert len(list((home / "runs").iterdir())) == 1
    assert sorted(p.name for p in (home / "alerts").iterdir()) == ["README.txt",
                                                                   "alert_error_20261120_000000_bcde2345.json"]
    after = rows(db)
    assert after["request_index"] == 1 and after["feedback"] == 1
    assert after["arm_outcomes"] == 1 and after["arm_errors"] == 0 and after["arm_latency_buckets"] == 1
    assert after["canary_runs"] == 1

    again = run_cleanup(settings, registry, db=db, now=NOW)
    assert all(step.count == 0 for step in again.steps)
    store = DatasetStore(home, settings.data, registry=registry)
    assert len(store.load(SIG, versions[0])) == 4  # an archived version still loads


def test_the_newest_run_is_kept_even_when_old(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('home = "home"\n')
    settings = load_settings(tmp_path / "ratchet.toml")
    for name in ("run_20200101_000000", "run_20200201_000000"):
        (settings.home_dir / "runs" / name).mkdir(parents=True)
    report = run_cleanup(settings, dry_run=False, now=NOW)
    assert report.step("runs").items == ["runs/run_20200101_000000"]
    assert [p.name for p in (settings.home_dir / "runs").iterdir()] == ["run_20200201_000000"]


def test_old_optimize_logs_go_with_old_runs(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('home = "home"\n[retention]\nruns_days = 30\n')
    settings = load_settings(tmp_path / "ratchet.toml")
    logs = settings.home_dir / "logs"
    logs.mkdir(parents=True)
    old, recent, other = logs / "optimize_s_20200101_000000.log", logs / "optimize_s_now.log", logs / "cycle.log"
    for path in (old, recent, other):
        path.write_text("Bootstrapped 8 full traces\n")
        os.utime(path, (NOW - 40 * DAY, NOW - 40 * DAY))
    os.utime(recent, (NOW - DAY, NOW - DAY))
    dry = run_cleanup(settings, dry_run=True, now=NOW)
    assert dry.step("runs").items == ["logs/optimize_s_20200101_000000.log"] and old.exists()
    report = run_cleanup(settings, dry_run=False, now=NOW)
    assert report.step("runs").items == ["logs/optimize_s_20200101_000000.log"]
    assert not old.exists() and recent.exists() and other.exists()  # the scheduler's job logs are not ours


def test_cleanup_cli_json_and_table(tmp_path: Path) -> None:
    settings, _registry, db, _versions = make_home(tmp_path)
    db.dispose()
    config = str(tmp_path / "ratchet.toml")
    result = runner.invoke(app, ["--config", config, "cleanup", "--dry-run", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["dry_run"] is True and data["errors"] == []
    assert {s["name"]: s["count"] for s in data["steps"]}["runs"] == 2
    assert (settings.home_dir / "runs" / "run_20260101_020000").exists()
    human = runner.invoke(app, ["--config", config, "cleanup"])
    assert human.exit_code == 0, human.output
    assert "request_index" in human.stdout and "removed" in human.stdout
    assert not (settings.home_dir / "runs" / "run_20260101_020000").exists()


def test_the_dspy_cache_goes_only_when_unused_and_no_process_has_it_open(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('home = "home"\n[retention]\ndspy_cache_days = 30\n')
    settings = load_settings(tmp_path / "ratchet.toml")
    home = settings.home_dir
    directory = old_dspy_cache(home, days=10)
    assert run_cleanup(settings, now=NOW).step("dspy_cache").count == 0  # written 10 days ago: kept

    holder = subprocess.Popen(  # an optimization run: configures DSPy for a non-serving process, then waits
        [sys.executable, "-c", "import sys, dspy\n"
         "from ratchet.config import load_settings\nfrom ratchet.lm import LMBundle, configure_dspy\n"
         f"settings = load_settings({str(tmp_path / 'ratchet.toml')!r})\n"
         "configure_dspy(settings, bundle=LMBundle.for_lm(dspy.LM('openai/unused'), dspy.ChatAdapter()))\n"
         "print('ready', flush=True)\nsys.stdin.read()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        age_all(directory, 40)
        for dry_run in (True, False):
            step = run_cleanup(settings, dry_run=dry_run, now=NOW).step("dspy_cache")
            assert step.count == 0 and step.skipped == ["cache/dspy: open in a running process "
                                                        "(optimize, eval or predict)"]
        assert list(directory.rglob("cache.db"))  # untouched
    finally:
        holder.communicate("", timeout=30)
    assert holder.returncode == 0
    age_all(directory, 40)  # closing the cache wrote it

    assert run_cleanup(settings, dry_run=True, now=NOW).step("dspy_cache").items == ["cache/dspy"]
    assert directory.is_dir()
    report = run_cleanup(settings, now=NOW)
    assert report.step("dspy_cache").count == 1 and not report.errors and not directory.exists()
    old_dspy_cache(home, days=40)
    os.utime(dspy_cache_lock_path(home))  # opened (and only read) today: kept
    assert run_cleanup(settings, now=NOW).step("dspy_cache").count == 0


def test_old_eval_reports_go_but_each_signatures_newest_stays(tmp_path: Path) -> None:
    (tmp_path / "ratchet.toml").write_text('home = "home"\n[retention]\neval_reports_days = 30\n')
    settings = load_settings(tmp_path / "ratchet.toml")
    reports = settings.home_dir / "eval_reports"
    for signature, stems, days in (("classify_intent", ["20200101T050000Z", "20200102T050000Z",
                                                         "20200102T050000Z_1"], 400),
                                   ("extract_booking", ["20200101T050000Z"], 400),
                                   ("triage_ticket", ["20991231T050000Z", "20991231T060000Z"], 1)):
        (reports / signature).mkdir(parents=True)
        for stem in stems:
            for suffix in (".json", ".md"):
                path = reports / signature / f"{stem}{suffix}"
                path.write_text("{}")
                age(path, days)
    dry = run_cleanup(settings, dry_run=True, now=NOW)
    assert dry.step("eval_reports").count == 4 and len(list(reports.rglob("*.json"))) == 6
    report = run_cleanup(settings, dry_run=False, now=NOW)
    assert sorted(report.step("eval_reports").items) == [
        f"eval_reports/classify_intent/{stem}{suffix}" for stem in ("20200101T050000Z", "20200102T050000Z")
        for suffix in (".json", ".md")]
    assert sorted(p.name for p in reports.rglob("*.json")) == [  # the newest by the pairing order (_1 after)
        "20200101T050000Z.json", "20200102T050000Z_1.json", "20991231T050000Z.json", "20991231T060000Z.json"]
