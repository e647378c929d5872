"""The buffered telemetry writer: nothing lost, nothing torn, errors counted and never raised."""

from __future__ import annotations

import errno
import gzip
import logging
import multiprocessing
import os
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from ratchet.store.jsonl import JsonlReadStats, iter_jsonl
from ratchet.telemetry import writer as writer_module
from ratchet.telemetry.writer import ACTIVE_NAME, TelemetryWriter, iter_log_files

PAD = "x" * 200


def record(worker: int, i: int) -> dict[str, Any]:
    return {"record": "interaction", "request_id": f"{worker}-{i}", "signature": "sig", "input": {"text": PAD},
            "output": {"label": "ok"}, "timestamp_ms": i, "success": True}


def read_all(directory: Path) -> tuple[list[dict[str, Any]], JsonlReadStats]:
    stats = JsonlReadStats()
    records = [r for path in iter_log_files(directory) for r in iter_jsonl(path, stats)]
    return records, stats


def make_writer(directory: Path, **kwargs: Any) -> TelemetryWriter:
    kwargs.setdefault("flush_interval_s", 0.05)
    return TelemetryWriter(directory, **kwargs)


def test_flush_writes_everything_in_order(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "t", batch_size=64)
    try:
        assert all(w.submit(record(0, i)) for i in range(1000))
        assert w.flush()
        records, stats = read_all(tmp_path / "t")
        assert [r["request_id"] for r in records] == [f"0-{i}" for i in range(1000)]
        assert stats.bad_lines == 0
        s = w.stats()
        assert (s["submitted"], s["written"], s["dropped"], s["queue_depth"]) == (1000, 1000, 0, 0)
    finally:
        w.close()


def test_records_are_written_after_the_flush_interval_without_flush(tmp_path: Path) -> None:
    w = make_writer(tmp_path, flush_interval_s=0.05)
    try:
        w.submit(record(0, 0))
        deadline = time.monotonic() + 3
        while w.stats()["written"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r["request_id"] for r in iter_jsonl(tmp_path / ACTIVE_NAME)] == ["0-0"]
    finally:
        w.close()


def test_close_flushes_is_idempotent_and_later_submits_are_dropped(tmp_path: Path) -> None:
    w = make_writer(tmp_path, flush_interval_s=30, batch_size=10_000)  # would wait 30 s without close
    for i in range(100):
        w.submit(record(0, i))
    started = time.monotonic()
    w.close()
    w.close()
    assert time.monotonic() - started < 3
    assert len(read_all(tmp_path)[0]) == 100
    assert w.submit(record(0, 100)) is False
    s = w.stats()
    assert (s["submitted"], s["written"], s["dropped"], s["dropped_closed"]) == (101, 100, 1, 1)


def test_full_queue_drops_and_counts_without_blocking(tmp_path: Path) -> None:
    w = make_writer(tmp_path, queue_size=5, flush_interval_s=30, batch_size=1000)  # the thread waits for a batch
    try:
        started = time.perf_counter()
        results = [w.submit(record(0, i)) for i in range(12)]
        assert time.perf_counter() - started < 0.5
        assert results == [True] * 5 + [False] * 7
        assert w.stats()["queue_depth"] == 5
        assert w.flush()
        s = w.stats()
        assert (s["submitted"], s["written"], s["dropped"], s["dropped_queue_full"]) == (12, 5, 7, 7)
        assert [r["request_id"] for r in read_all(tmp_path)[0]] == [f"0-{i}" for i in range(5)]
    finally:
        w.close()


def test_unserializable_record_is_dropped_and_the_rest_written(tmp_path: Path) -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    w = make_writer(tmp_path)
    try:
        w.submit(record(0, 0))
        w.submit(loop)
        w.submit(["not", "a", "dict"])  # type: ignore[arg-type]
        w.submit({"when": object()})  # default=str, like append_jsonl
        assert w.flush()
        assert w.stats()["dropped_invalid"] == 2
        assert len(read_all(tmp_path)[0]) == 2
    finally:
        w.close()


@pytest.mark.parametrize("compress", [True, False])
def test_rotation_keeps_every_record(tmp_path: Path, compress: bool) -> None:
    w = make_writer(tmp_path, max_file_mb=0.01, compress_rotated=compress, batch_size=16)
    for i in range(1500):
        w.submit(record(0, i))
    w.close()
    s = w.stats()
    files = iter_log_files(tmp_path)
    rotated = files[:-1]
    assert s["rotations"] >= 10 and len(rotated) == s["rotations"]
    assert files[-1].name == ACTIVE_NAME
    if compress:
        assert all(p.name.endswith(".jsonl.gz") for p in rotated) and s["compressed"] == s["rotations"]
        with gzip.open(rotated[0], "rb") as fh:
            assert fh.readline().startswith(b"{")
    else:
        assert all(p.suffix == ".jsonl" for p in rotated) and s["compressed"] == 0
    assert all(writer_module._ROTATED.match(p.name) for p in rotated)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    records, stats = read_all(tmp_path)
    assert [r["request_id"] for r in records] == [f"0-{i}" for i in range(1500)]  # oldest file first
    assert stats.bad_lines == 0


def test_iter_log_files_lists_a_file_being_compressed_once(tmp_path: Path) -> None:
    old = tmp_path / "interactions-20240101T000000-1-0.jsonl"
    new = tmp_path / "interactions-20240102T000000-1-1.jsonl"
    for path in (new, old, old.with_name(old.name + ".gz")):
        path.write_text("{}\n")
    (tmp_path / ACTIVE_NAME).write_text("{}\n")
    (tmp_path / ".interactions-x.jsonl.gz.1.2.tmp").write_text("")
    (tmp_path / "notes.jsonl").write_text("")
    assert [p.name for p in iter_log_files(tmp_path)] == [old.name + ".gz", new.name, ACTIVE_NAME]
    assert iter_log_files(tmp_path / "missing") == []


def _aged_files(directory: Path, now: float) -> dict[str, Path]:
    files = {
        "old_plain": directory / "interactions-20240101T000000-1-0.jsonl",
        "old_gz": directory / "interactions-20240101T000000-1-1.jsonl.gz",
        "fresh_plain": directory / "interactions-20240103T000000-1-2.jsonl",
        "active": directory / ACTIVE_NAME,
        "stale_tmp": directory / ".interactions-20240101T000000-1-3.jsonl.gz.9.9.tmp",
    }
    ages_days = {"old_plain": 3, "old_gz": 2, "fresh_plain": 0.5, "active": 10, "stale_tmp": 1}
    for name, path in files.items():
        path.write_bytes(gzip.compress(b"{}\n") if path.name.endswith(".gz") else b"{}\n")
        when = now - ages_days[name] * 86400
        os.utime(path, (when, when))
    return files


def test_retention_deletes_old_rotated_files_never_the_active_one(tmp_path: Path) -> None:
    w = make_writer(tmp_path / "w", max_age_days=1)
    w.close()  # no background maintenance racing the direct call
    now = time.time()
    files = _aged_files(tmp_path / "w", now)
    deleted = w.apply_retention(now)
    assert sorted(deleted) == sorted([files["old_plain"], files["old_gz"]])
    assert files["fresh_plain"].exists() and files["active"].exists() and not files["stale_tmp"].exists()
    assert w.stats()["deleted"] == 2
    assert w.apply_retention(now) == []
    assert w.apply_retention(now + 86400) == [files["fresh_plain"]]
    assert files["active"].exists()


def test_startup_compresses_leftovers_and_applies_retention(tmp_path: Path) -> None:
    files = _aged_files(tmp_path, time.time())
    w = make_writer(tmp_path, max_age_days=1)
    w.close()
    assert [p.name for p in iter_log_files(tmp_path)] == [files["fresh_plain"].name + ".gz", ACTIVE_NAME]
    gz = tmp_path / (files["fresh_plain"].name + ".gz")
    assert gzip.decompress(gz.read_bytes()) == b"{}\n"
    assert abs(gz.stat().st_mtime - (time.time() - 0.5 * 86400)) < 60  # aged like the data, not the copy
    assert (w.stats()["compressed"], w.stats()["deleted"]) == (1, 2)


def test_write_error_is_counted_logged_once_and_never_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    real_write = os.write
    w = make_writer(tmp_path)
    w.retry_delays_s = (0.01, 0.01)

    def disk_full(fd: int, data: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    try:
        monkeypatch.setattr(writer_module.os, "write", disk_full)
        with caplog.at_level(logging.WARNING, logger=writer_module.__name__):
            for batch in range(2):
                assert all(w.submit(record(batch, i)) for i in range(10))
                assert w.flush()
        s = w.stats()
        assert (s["submitted"], s["written"], s["dropped"], s["dropped_write_error"]) == (20, 0, 20, 20)
        assert s["write_errors"] == 6  # 3 attempts per batch
        assert len([r for r in caplog.records if "No space left" in r.getMessage()]) == 1  # once a minute
        monkeypatch.setattr(writer_module.os, "write", real_write)
        assert w.submit(record(9, 0)) and w.flush()
        assert [r["request_id"] for r in read_all(tmp_path)[0]] == ["9-0"]
    finally:
        monkeypatch.setattr(writer_module.os, "write", real_write)
        w.close()


def test_short_write_is_resumed_without_duplicates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write = os.write
    calls = {"n": 0}

    def flaky(fd: int, data: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # the disk fills up mid-record
            return real_write(fd, bytes(data[: len(data) // 2 + 7]))
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    w = make_writer(tmp_path, batch_size=100)
    w.retry_delays_s = (0.01,)
    monkeypatch.setattr(writer_module.os, "write", flaky)
    try:
        for i in range(10):
            w.submit(record(0, i))
        assert w.flush()
    finally:
        monkeypatch.setattr(writer_module.os, "write", real_write)
        w.close()
    records, stats = read_all(tmp_path)
    assert sorted(r["request_id"] for r in records) == sorted(f"0-{i}" for i in range(10))
    assert stats.bad_lines == 1  # the torn fragment, skipped by readers
    s = w.stats()
    assert (s["written"], s["dropped"], s["write_errors"]) == (10, 0, 1)


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_directory_is_counted(tmp_path: Path) -> None:
    directory = tmp_path / "ro"
    directory.mkdir()
    directory.chmod(0o500)
    w = make_writer(directory)
    w.retry_delays_s = ()
    try:
        assert w.submit(record(0, 0))
        assert w.flush()
        assert w.stats()["write_errors"] == 1 and w.stats()["dropped"] == 1
    finally:
        w.close()
        directory.chmod(0o700)


def test_records_are_flushed_at_interpreter_exit(tmp_path: Path) -> None:
    code = ("import sys; from pathlib import Path; from ratchet.telemetry import TelemetryWriter; "
            "w = TelemetryWriter(Path(sys.argv[1]), flush_interval_s=30, batch_size=10_000); "
            "[w.submit({'i': i}) for i in range(50)]")
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    assert [r["i"] for r in read_all(tmp_path)[0]] == list(range(50))


def _write_worker(directory: str, worker: int, n: int, start: Any) -> None:
    start.wait(30)
    w = TelemetryWriter(Path(directory), max_file_mb=0.02, queue_size=n, flush_interval_s=0.01, batch_size=32)
    for i in range(n):
        w.submit(record(worker, i))
        if i % 200 == 0:
            time.sleep(0.001)  # let the processes interleave
    w.close()
    stats = w.stats()
    if stats["written"] != n or stats["dropped"]:
        raise SystemExit(f"worker {worker}: {stats}")


def test_several_processes_with_rotation_lose_nothing(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("spawn")
    start = ctx.Event()
    workers, n = 3, 1500
    procs = [ctx.Process(target=_write_worker, args=(str(tmp_path), k, n, start)) for k in range(workers)]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0] * workers
    records, stats = read_all(tmp_path)
    ids = [r["request_id"] for r in records]
    assert stats.bad_lines == 0
    assert len(ids) == len(set(ids)) == workers * n
    for k in range(workers):  # each process's records keep their order across files
        assert [i for i in ids if i.startswith(f"{k}-")] == [f"{k}-{i}" for i in range(n)]
    rotated = iter_log_files(tmp_path)[:-1]
    assert len(rotated) >= 10 and all(p.name.endswith(".gz") for p in rotated)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.skipif(sys.platform == "darwin", reason="fork with threads is unsafe on macOS")
def test_forked_child_gets_its_own_writer_thread(tmp_path: Path) -> None:
    w = make_writer(tmp_path)
    try:
        w.submit(record(0, 0))
        assert w.flush()
        with warnings.catch_warnings():  # Python 3.12 warns about fork() with threads
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # child: the parent's thread does not exist here
            ok = w.submit(record(1, 0)) and w.flush(5)
            w.close()
            os._exit(0 if ok else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        w.submit(record(0, 1))
        assert w.flush()
    finally:
        w.close()
    assert sorted(r["request_id"] for r in read_all(tmp_path)[0]) == ["0-0", "0-1", "1-0"]
