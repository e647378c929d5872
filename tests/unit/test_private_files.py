"""Files that hold user text are owner-only: 0o600 files, 0o700 directories, never wider than the umask allows."""

import gzip
import json
import os
import sqlite3
import stat
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ratchet.cli.output import captured_output
from ratchet.config import load_settings
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import ExampleRecord
from ratchet.evaluation import fewshot_program
from ratchet.loop import cycle
from ratchet.monitor.alerts import Alert
from ratchet.monitor.channels.file import FileChannel
from ratchet.monitor.state import MonitoringState, locked, save_state
from ratchet.ops.backup import create_backup, restore_backup
from ratchet.ops.scheduler import Scheduler
from ratchet.programs import load_programs
from ratchet.programs.versions import VersionStore
from ratchet.rollout import RolloutController
from ratchet.routing import ROUTING_FILENAME
from ratchet.store import (
    PRIVATE_READ_ONLY,
    SHARED_FILE,
    append_jsonl,
    atomic_write_json,
    create_private,
    make_private_dir,
    open_private,
)
from ratchet.store.db import StateDB, database_url
from ratchet.telemetry.writer import TelemetryWriter

SIG = "classify_intent"
BANKING = Path(__file__).parents[2] / "src" / "ratchet" / "examples" / "data" / "banking77" / "train.jsonl"


@pytest.fixture
def umask() -> Iterator[Callable[[int], None]]:
    """Set the process umask for the test (restored afterwards)."""
    original = os.umask(0o022)

    def set_umask(value: int) -> None:
        os.umask(value)

    yield set_umask
    os.umask(original)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def modes(root: Path) -> dict[str, int]:
    """Relative path → permission bits of everything under ``root`` (the root included; symlinks left out),
    taken while a connection holds the SQLite database open (its -wal and -shm files exist meanwhile)."""
    conn = sqlite3.connect(root / "ratchet.db") if (root / "ratchet.db").exists() else None
    try:
        if conn is not None:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        found = {".": mode(root)}
        for path in root.rglob("*"):
            if not path.is_symlink():
                found[str(path.relative_to(root))] = mode(path)
        return found
    finally:
        if conn is not None:
            conn.close()


def fill_home(tmp_path: Path) -> Path:
    """A home written by every part of Ratchet that stores user text; returns it (it did not exist before)."""
    (tmp_path / "ratchet.toml").write_text('home = "data/home"\n')
    settings = load_settings(tmp_path / "ratchet.toml")
    home = settings.home_dir
    assert not home.parent.exists()
    with StateDB(database_url(settings)) as db:
        db.ensure_migrated()
    registry = load_programs(settings)
    spec = registry.get(SIG)
    rows = [json.loads(line) for line in BANKING.read_text().splitlines()[:12]]
    store = DatasetStore(home, settings.data, registry=registry)
    for i in range(3):
        store.add(SIG, [ExampleRecord(values=r, signature=SIG, source="test", quality=80.0, difficulty="easy")
                        for r in rows[i * 4:(i + 1) * 4]], source="test")
    assert store.archive(SIG, older_than_days=0, keep=1)
    versions = VersionStore(home)
    versions.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
    versions.save(spec, fewshot_program(spec, 4), lm="m", adapter="a")
    controller = RolloutController(settings, registry)
    controller.start(SIG, "v2", experiment_id="exp_1", baseline="v1")
    controller.db.dispose()
    writer = TelemetryWriter(home / "telemetry", max_file_mb=0.0001)  # ~100 bytes: rotates, then gzips
    for i in range(5):
        writer.submit({"input": f"my card number is {i}", "pad": "x" * 100})
        writer.flush()
    writer.close()
    assert list((home / "telemetry").glob("*.jsonl.gz"))
    with TelemetryWriter(home / "telemetry") as writer:  # and an active file
        writer.submit({"input": "my name is Ada"})
    FileChannel(home / "alerts").send(Alert(level="warning", title="t", message="user text"))
    with locked(home / "monitoring_state.json"):
        save_state(home / "monitoring_state.json", MonitoringState())
    with captured_output(home / "logs" / "optimize_x.log"):
        print("optimizer output")
    scheduler = Scheduler(settings, commands={"checks": [sys.executable, "-c", "print('checked')"]}, triggers={})
    assert scheduler.run_job("checks").status == "ok"
    return home


def test_everything_under_a_new_home_is_owner_only(tmp_path: Path, umask, monkeypatch: pytest.MonkeyPatch) -> None:
    umask(0o022)
    home = fill_home(tmp_path)
    monkeypatch.setattr(cycle, "_run_signature", lambda *args: {"errors": [], "success": True,
                                                                "improvement_percent": None})
    summary = cycle.run_cycle(load_settings(tmp_path / "ratchet.toml"), load_programs(load_settings()),
                              cycle.CycleOptions(signatures=[SIG]))
    assert Path(summary["output_dir"]).parent == home / "runs"
    found = modes(home)
    expected_kinds = {"ratchet.db", "ratchet.db-wal", "ratchet.db-shm", "telemetry/interactions.jsonl",
                      "telemetry/.telemetry.lock", f"programs/{SIG}/v1/program.json",
                      f"programs/{SIG}/v2/metadata.json", "experiments", "monitoring_state.json",
                      "monitoring_state.json.lock", "logs/checks.log", "logs/schedule.jsonl", "logs/optimize_x.log",
                      "run/checks.lock", f"training_data/{SIG}/.lock", f"training_data/{SIG}/archive",
                      ROUTING_FILENAME}
    assert expected_kinds <= set(found)
    assert any(name.endswith(".jsonl.gz") for name in found) and any(name.startswith("alerts/") for name in found)
    assert any(name.startswith("runs/run_") and name.endswith("/logs") for name in found)
    assert mode(home.parent) == 0o700  # every directory Ratchet had to create, not just the home
    wrong = {}
    for name, bits in found.items():
        path = home / name
        if name == ROUTING_FILENAME:
            want = 0o644  # no user text; read by serving processes (decided in ratchet.routing)
        elif path.is_dir():
            want = 0o700
        elif name.startswith("training_data/") and not name.endswith(".lock"):
            want = 0o400  # dataset versions and their archives are write-once
        else:
            want = 0o600
        if bits != want:
            wrong[name] = oct(bits)
    assert wrong == {}


def test_a_restrictive_umask_is_kept(tmp_path: Path, umask) -> None:
    umask(0o077)
    home = fill_home(tmp_path)
    wider = {name: oct(bits) for name, bits in modes(home).items() if bits & 0o077}
    assert wider == {}
    assert mode(home / ROUTING_FILENAME) == 0o600  # even a shared file is narrowed by the umask


def test_a_stricter_umask_than_owner_only_is_respected(tmp_path: Path, umask) -> None:
    umask(0o277)  # not even the owner may write (or search, for directories)
    atomic_write_json(tmp_path / "state.json", {"x": 1})
    atomic_write_json(tmp_path / "shared.json", {"x": 1}, mode=SHARED_FILE)
    atomic_write_json(tmp_path / "dataset.json", {"x": 1}, mode=PRIVATE_READ_ONLY)
    append_jsonl(tmp_path / "log.jsonl", [{"x": 1}])
    os.close(open_private(tmp_path / "lock", os.O_RDWR))
    create_private(tmp_path / "ratchet.db")
    make_private_dir(tmp_path / "dir")
    assert {name: mode(tmp_path / name) for name in ("state.json", "shared.json", "dataset.json", "log.jsonl",
                                                     "lock", "ratchet.db", "dir")} == {
        "state.json": 0o400, "shared.json": 0o400, "dataset.json": 0o400, "log.jsonl": 0o400, "lock": 0o400,
        "ratchet.db": 0o400, "dir": 0o500}


def test_sqlite_wal_and_shm_files_take_the_database_file_mode(tmp_path: Path, umask) -> None:
    umask(0o022)
    path = tmp_path / "state" / "ratchet.db"
    with StateDB(f"sqlite:///{path}") as db, db.begin(write=True):
        pass
    conn = sqlite3.connect(path)  # a second connection keeps -wal and -shm while we look
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        assert {p.name: mode(p) for p in path.parent.iterdir()} == {
            "ratchet.db": 0o600, "ratchet.db-wal": 0o600, "ratchet.db-shm": 0o600}
    finally:
        conn.close()
    assert mode(path.parent) == 0o700


def test_make_private_dir_leaves_existing_directories_alone(tmp_path: Path, umask) -> None:
    umask(0o022)
    (tmp_path / "shared").mkdir(mode=0o755)
    os.chmod(tmp_path / "shared", 0o755)
    assert make_private_dir(tmp_path / "shared" / "a" / "b") == tmp_path / "shared" / "a" / "b"
    assert (mode(tmp_path / "shared"), mode(tmp_path / "shared" / "a"), mode(tmp_path / "shared" / "a" / "b")) == (
        0o755, 0o700, 0o700)
    make_private_dir(tmp_path / "shared" / "a")  # exists: fine
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileExistsError):
        make_private_dir(tmp_path / "file")
    with pytest.raises(FileExistsError):
        make_private_dir(tmp_path / "file" / "below")


def test_backup_archives_and_restored_homes_are_owner_only(tmp_path: Path, umask) -> None:
    umask(0o022)
    home = fill_home(tmp_path)
    settings = load_settings(tmp_path / "ratchet.toml")
    archive = tmp_path / "backups" / "nested" / "ratchet.tar.gz"
    create_backup(settings, archive, include_telemetry=True)
    assert (mode(archive), mode(archive.parent), mode(archive.parent.parent)) == (0o600, 0o700, 0o700)
    with tarfile.open(archive, "r:gz") as tar:
        assert tar.getmember("database/schema_migrations.jsonl").mode == 0o600
    target = tmp_path / "restored" / "home"
    restore_backup(settings, archive, home=target, allow_unsigned=True)
    wider = {name: oct(bits) for name, bits in modes(target).items()
             if bits & 0o077 and name != ROUTING_FILENAME}
    assert wider == {}
    assert mode(target / "ratchet.db") == 0o600 and mode(target.parent) == 0o700
    with gzip.open(next((target / "telemetry").glob("*.jsonl.gz"))) as fh:
        assert b"my card number" in fh.read()
    assert home != target


def test_a_cycle_with_runs_elsewhere_still_creates_the_home_owner_only(tmp_path: Path, umask,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    umask(0o022)
    settings = load_settings()
    monkeypatch.setattr(cycle, "_run_signature", lambda *args: {"errors": [], "success": True,
                                                                "improvement_percent": None})
    cycle.run_cycle(settings, load_programs(settings), cycle.CycleOptions(signatures=[SIG],
                                                                          output_dir=tmp_path / "elsewhere" / "runs"))
    assert mode(settings.home_dir) == 0o700  # the phases' DSPy cache goes under it
    assert {mode(p) for p in (tmp_path / "elsewhere").rglob("*")} <= {0o700, 0o600}
