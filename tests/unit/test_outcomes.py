"""Per-arm outcome counters: exact totals under concurrency, windows, percentiles, failures (SQLite and PostgreSQL)."""

from __future__ import annotations

import logging
import math
import multiprocessing
import random
import sqlite3
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise

import psycopg
import pytest
from sqlalchemy import text

from ratchet.store.db import StateDB
from ratchet.store.feedback import record_feedback
from ratchet.store.outcomes import (
    LATENCY_BUCKET_BOUNDS_S,
    UNKNOWN_ERROR,
    IndexedRequest,
    OutcomeRecorder,
    find_request,
    latency_quantile,
    lookup_request,
    prune_outcomes,
    prune_request_index,
    read_arm_stats,
    read_totals,
)

T0 = 1_700_000_040.0  # a minute boundary (epoch minute 28_333_334)
ARMS = [("v1", "baseline"), ("v2", "candidate")]
BUCKET_RATIO = 10 ** 0.1  # one histogram bucket


def _request(i: int) -> dict:
    """A deterministic request pattern whose totals are easy to compute."""
    return {
        "latency_s": 0.001 * (i % 997 + 1),
        "success": i % 7 != 0,
        "error_type": ("Timeout", "ParseError", None)[i % 3] if i % 7 == 0 else None,
        "tokens_in": i % 11,
        "tokens_out": i % 5,
        "cost_usd": 0.25 * (i % 4),  # exact in binary: float sums stay exact
        "at": T0 + (i % 180),  # three minutes
    }


def _expected(indices: range | list[int]) -> dict[tuple[str, str], dict]:
    expected: dict[tuple[str, str], dict] = {}
    for i in indices:
        arm = ARMS[i % 2]
        r = _request(i)
        e = expected.setdefault(arm, {"requests": 0, "errors": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0,
                                      "latency_sum": 0.0, "by_type": {}})
        e["requests"] += 1
        e["tokens_in"] += r["tokens_in"]
        e["tokens_out"] += r["tokens_out"]
        e["cost_usd"] += r["cost_usd"]
        e["latency_sum"] += r["latency_s"]
        if not r["success"]:
            e["errors"] += 1
            kind = r["error_type"] or UNKNOWN_ERROR
            e["by_type"][kind] = e["by_type"].get(kind, 0) + 1
    return expected


def _record_range(recorder: OutcomeRecorder, indices: range) -> None:
    for i in indices:
        version, arm = ARMS[i % 2]
        recorder.record("sig", version, arm, **_request(i))
        recorder.index_request(f"req-{i}", "sig", version, arm, at=T0)


def _assert_totals(db: StateDB, indices: range | list[int]) -> None:
    stats = read_arm_stats(db, "sig")
    expected = _expected(indices)
    assert set(stats) == set(expected)
    for arm, e in expected.items():
        s = stats[arm]
        assert (s.requests, s.errors, s.tokens_in, s.tokens_out) == (e["requests"], e["errors"], e["tokens_in"],
                                                                     e["tokens_out"])
        assert s.cost_usd == e["cost_usd"]
        assert s.errors_by_type == e["by_type"]
        assert s.latency_mean_s == pytest.approx(e["latency_sum"] / e["requests"], rel=1e-9)
        assert sum(s.latency_buckets.values()) == e["requests"]
        assert s.error_rate == pytest.approx(e["errors"] / e["requests"])


def _recorder_process(url: str, start: int, stop: int, barrier) -> None:
    """One serving process: its own engine and recorder (migrating a fresh database), flushing as it records."""
    db = StateDB(url)
    recorder = OutcomeRecorder(db, flush_interval_s=0.01)
    barrier.wait(60)
    try:
        for chunk in range(start, stop, 200):
            _record_range(recorder, range(chunk, min(chunk + 200, stop)))
            time.sleep(0.01)
    finally:
        recorder.close()
        db.dispose()
    assert recorder.stats().flushes > 1 and recorder.stats().flush_errors == 0


@pytest.fixture
def db(state_db_url: str) -> Iterator[StateDB]:
    database = StateDB(state_db_url)
    yield database
    database.dispose()


@pytest.fixture
def recorder(db: StateDB) -> Iterator[Callable[..., OutcomeRecorder]]:
    made: list[OutcomeRecorder] = []

    def make(database: StateDB = db, **kwargs) -> OutcomeRecorder:
        kwargs.setdefault("flush_interval_s", 3600)  # tests flush explicitly unless they ask otherwise
        made.append(OutcomeRecorder(database, **kwargs))
        return made[-1]

    yield make
    for r in made:
        r.close()


def test_counts_from_eight_threads_are_exact(db: StateDB, recorder) -> None:
    rec = recorder(flush_interval_s=0.01)  # flushes run while threads record
    n, workers = 4000, 8
    threads = [threading.Thread(target=_record_range, args=(rec, range(w * n, (w + 1) * n))) for w in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rec.close()
    stats = rec.stats()
    assert stats.recorded == n * workers and stats.pending == 0 and stats.flush_errors == 0
    assert stats.flushes > 1
    _assert_totals(db, range(n * workers))


def test_counts_from_three_processes_are_exact(state_db_url: str) -> None:
    n, ctx = 3000, multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    processes = [ctx.Process(target=_recorder_process, args=(state_db_url, p * n, (p + 1) * n, barrier))
                 for p in range(3)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    with StateDB(state_db_url) as db:
        _assert_totals(db, range(3 * n))
        assert lookup_request(db, f"req-{3 * n - 1}") == ("sig", *ARMS[(3 * n - 1) % 2])


def test_background_thread_flushes_without_being_asked(db: StateDB, recorder) -> None:
    rec = recorder(flush_interval_s=0.05)
    rec.record("sig", "v1", "baseline", latency_s=0.1, success=True)
    deadline = time.monotonic() + 10
    while not read_arm_stats(db, "sig") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert read_arm_stats(db, "sig")[("v1", "baseline")].requests == 1


def test_many_pending_keys_wake_the_flusher_early(db: StateDB, recorder) -> None:
    rec = recorder(flush_interval_s=3600, max_pending_keys=50)
    for minute in range(60):
        rec.record("sig", "v1", "baseline", latency_s=0.1, success=True, at=T0 + 60 * minute)
    deadline = time.monotonic() + 10
    while rec.stats().flushes == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert rec.stats().flushes >= 1


def test_errors_by_type_and_unknown(db: StateDB, recorder) -> None:
    rec = recorder()
    for kind in ["Timeout", "Timeout", "RateLimit", None]:
        rec.record("sig", "v1", "baseline", latency_s=0.2, success=False, error_type=kind, at=T0)
    rec.record("sig", "v1", "baseline", latency_s=0.2, success=True, error_type="ignored", at=T0)
    assert rec.flush()
    stats = read_arm_stats(db, "sig")[("v1", "baseline")]
    assert stats.errors_by_type == {"Timeout": 2, "RateLimit": 1, UNKNOWN_ERROR: 1}
    assert (stats.requests, stats.errors, stats.error_rate, stats.success_rate) == (5, 4, 0.8, pytest.approx(0.2))


def test_quality_comes_from_feedback_joined_to_the_serving_arm(db: StateDB, recorder) -> None:
    rec = recorder()
    scores = [0.5, 0.75, 1.0, 0.0, 0.9, 0.25]
    for i, score in enumerate(scores):
        rec.index_request(f"c{i}", "sig", "v2", "candidate", at=T0 + 70 * i)
        record_feedback(db, f"c{i}", 0.0 if i == 0 else score)
    record_feedback(db, "c0", scores[0])  # a later score for the same request replaces the first
    record_feedback(db, "never-served", 1.0)  # matches no request: counted nowhere
    rec.record("sig", "v1", "baseline", latency_s=0.1, success=True, at=T0)
    assert rec.flush()  # the index rows arrive after the feedback: the join does not care
    stats = read_arm_stats(db, "sig")
    candidate = stats[("v2", "candidate")]
    assert candidate.quality_count == len(scores) and candidate.requests == 0
    assert candidate.quality_mean == pytest.approx(statistics.mean(scores))
    assert candidate.quality_std == pytest.approx(statistics.stdev(scores))
    assert stats[("v1", "baseline")].quality_mean is None and stats[("v1", "baseline")].quality_count == 0
    window = read_arm_stats(db, "sig", since=T0 + 60, until=T0 + 200)
    assert window[("v2", "candidate")].quality_count == 2  # requests at T0+70 and T0+140


def test_feedback_for_a_request_id_with_a_nul_character_joins_its_arm(db: StateDB, recorder) -> None:
    """Clients choose request ids: a NUL must neither break PostgreSQL nor lose the join on SQLite."""
    rec = recorder()
    rec.index_request("bad\x00id", "sig", "v2", "candidate", at=T0)
    assert rec.flush()
    record_feedback(db, "bad\x00id", 0.5)
    assert read_arm_stats(db, "sig")[("v2", "candidate")].quality_count == 1


def test_percentiles_of_a_lognormal_sample(db: StateDB, recorder) -> None:
    rng = random.Random(7)
    sample = [rng.lognormvariate(math.log(0.3), 0.9) for _ in range(20_000)]
    rec = recorder()
    for i, latency in enumerate(sample):
        rec.record("sig", "v1", "baseline", latency_s=latency, success=True, at=T0 + i % 600)
    assert rec.flush()
    stats = read_arm_stats(db, "sig")[("v1", "baseline")]
    ordered = sorted(sample)
    for q, estimate in [(0.50, stats.latency_p50_s), (0.95, stats.latency_p95_s), (0.99, stats.latency_p99_s)]:
        true = ordered[math.ceil(q * len(ordered)) - 1]
        assert abs(math.log10(estimate / true)) < 0.02, (q, estimate, true)  # bucket width is 0.1 decade
    assert stats.latency_mean_s == pytest.approx(statistics.fmean(sample), rel=1e-9)
    assert stats.latency_std_s == pytest.approx(statistics.stdev(sample), rel=1e-6)


def test_latency_quantile_interpolates_within_a_bucket() -> None:
    assert latency_quantile({}, 0.95) == 0.0
    one_second = LATENCY_BUCKET_BOUNDS_S.index(1.0)
    assert latency_quantile({one_second: 10}, 1.0) == 1.0
    assert latency_quantile({one_second: 10}, 0.5) == pytest.approx(10 ** -0.05)  # geometric mid-point
    assert latency_quantile({0: 4}, 0.5) == pytest.approx(0.0005)
    assert latency_quantile({len(LATENCY_BUCKET_BOUNDS_S): 3}, 0.99) == LATENCY_BUCKET_BOUNDS_S[-1]
    assert latency_quantile({10: 90, 40: 10}, 0.95) > LATENCY_BUCKET_BOUNDS_S[39]


def test_latency_buckets_are_log_spaced_from_1ms_to_10min() -> None:
    bounds = LATENCY_BUCKET_BOUNDS_S
    assert bounds[0] == pytest.approx(0.001) and 600 <= bounds[-1] <= 700
    assert all(b / a == pytest.approx(BUCKET_RATIO) for a, b in pairwise(bounds))


def test_time_windows_select_whole_minutes(db: StateDB, recorder) -> None:
    rec = recorder()
    for minute, count in enumerate([1, 2, 4, 8]):
        for _ in range(count):
            rec.record("sig", "v1", "baseline", latency_s=0.1, success=True, at=T0 + 60 * minute + 30)
    assert rec.flush()

    def requests(**window) -> int:
        stats = read_arm_stats(db, "sig", **window)
        return stats[("v1", "baseline")].requests if stats else 0

    assert requests() == 15
    assert requests(since=T0 + 60) == 14
    assert requests(until=T0 + 120) == 3
    assert requests(since=T0 + 60, until=T0 + 180) == 6
    assert requests(since=T0 + 90, until=T0 + 150) == 6  # partial minutes count whole
    assert requests(since=T0 + 240) == 0
    assert requests(since=T0 + 60, until=T0 + 120) + requests(since=T0 + 120, until=T0 + 240) == 14


def test_versions_filter_and_totals(db: StateDB, recorder) -> None:
    rec = recorder()
    for version, arm in [("v1", "baseline"), ("v2", "candidate"), ("v3", "candidate")]:
        rec.record("sig", version, arm, latency_s=0.1, success=True, at=T0)
    rec.record("other", "v9", "baseline", latency_s=0.1, success=True, tokens_in=5, at=T0 + 600)
    assert rec.flush()
    assert set(read_arm_stats(db, "sig", versions=["v1", "v2"])) == {("v1", "baseline"), ("v2", "candidate")}
    assert read_arm_stats(db, "sig", versions=[]) == {}
    totals = read_totals(db)
    assert set(totals) == {("sig", "v1", "baseline"), ("sig", "v2", "candidate"), ("sig", "v3", "candidate"),
                           ("other", "v9", "baseline")}
    assert set(read_totals(db, since=T0 + 300)) == {("other", "v9", "baseline")}
    assert read_totals(db, "other")[("other", "v9", "baseline")].tokens_in == 5


def test_a_failed_flush_keeps_every_count(db: StateDB, recorder) -> None:
    """The flush fails half-way (its last table is missing): nothing is written, nothing is lost."""
    rec = recorder()
    _record_range(rec, range(0, 500))
    with db.begin(write=True) as conn:
        conn.execute(text("ALTER TABLE arm_latency_buckets RENAME TO parked"))
    assert rec.flush() is False
    _record_range(rec, range(500, 800))  # recording goes on while the database is broken
    assert rec.flush() is False
    stats = rec.stats()
    assert stats.flush_errors == 2 and stats.pending > 0 and stats.flushes == 0
    assert stats.last_error and "arm_latency_buckets" in stats.last_error
    with db.begin(write=True) as conn:
        assert conn.execute(text("SELECT count(*) FROM arm_outcomes")).scalar() == 0  # rolled back as a whole
        conn.execute(text("ALTER TABLE parked RENAME TO arm_latency_buckets"))
    assert rec.flush() is True
    assert rec.stats().pending == 0
    _assert_totals(db, range(800))


def test_a_locked_database_delays_but_never_loses_counts(state_db_url: str, recorder) -> None:
    db = StateDB(state_db_url, lock_timeout_s=0.2)
    db.ensure_migrated()
    rec = recorder(db)
    _record_range(rec, range(300))
    with _hold_write_lock(db):
        started = time.monotonic()
        assert rec.flush() is False
        assert time.monotonic() - started < 5
        _record_range(rec, range(300, 400))
    assert rec.flush() is True
    _assert_totals(db, range(400))
    db.dispose()


@contextmanager
def _hold_write_lock(db: StateDB) -> Iterator[None]:
    """Another client holds the write lock: SQLite ``BEGIN EXCLUSIVE``; PostgreSQL ``LOCK TABLE``."""
    url = db.engine.url
    if db.dialect == "sqlite":
        conn = sqlite3.connect(url.database, isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
    else:
        conn = psycopg.connect(host=url.host, port=url.port, dbname=url.database, user=url.username,
                               options=url.query["options"])
        conn.execute("LOCK TABLE arm_outcomes IN ACCESS EXCLUSIVE MODE")
    try:
        yield
    finally:
        conn.rollback()
        conn.close()


def test_an_unreachable_database_never_raises_into_record(free_port, caplog) -> None:
    db = StateDB(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    rec = OutcomeRecorder(db, flush_interval_s=3600)
    try:
        with caplog.at_level(logging.WARNING, logger="ratchet.store.outcomes"):
            for attempt in range(3):
                rec.record("sig", "v1", "baseline", latency_s=0.1, success=True, at=T0)
                assert rec.flush() is False, attempt
        warnings = [r for r in caplog.records if "flush" in r.getMessage()]
        assert len(warnings) == 1  # at most one warning a minute
        assert rec.stats().flush_errors == 3 and rec.stats().recorded == 3
    finally:
        rec.close()  # its final flush fails too, and says so


def test_request_index_first_wins_and_prune(db: StateDB, recorder) -> None:
    rec = recorder()
    rec.index_request("r1", "sig", "v1", "baseline", at=1000.0)
    rec.index_request("r1", "sig", "v2", "candidate", at=1001.0)  # same batch
    assert rec.lookup("r1") == ("sig", "v1", "baseline")  # visible before the flush
    assert lookup_request(db, "r1") is None
    assert rec.flush()
    rec.index_request("r1", "sig", "v3", "candidate", at=1002.0)  # a later batch
    rec.index_request("r2", "sig", "v2", "candidate", at=2000.0)
    assert rec.flush()
    assert lookup_request(db, "r1") == ("sig", "v1", "baseline")
    assert find_request(db, "r1") == IndexedRequest("sig", "v1", "baseline", served_at=1000.0)
    assert rec.lookup("r2") == ("sig", "v2", "candidate")
    assert rec.find("r2").served_at == 2000.0 and find_request(db, "missing") is None
    assert lookup_request(db, "missing") is None
    assert prune_request_index(db, older_than=1500.0) == 1
    assert lookup_request(db, "r1") is None and lookup_request(db, "r2") is not None
    assert prune_request_index(db, older_than=1500.0) == 0


def test_pending_request_index_is_bounded(db: StateDB, recorder) -> None:
    rec = recorder(max_pending_requests=10)
    for i in range(15):
        rec.index_request(f"r{i}", "sig", "v1", "baseline")
    stats = rec.stats()
    assert (stats.indexed, stats.index_dropped) == (10, 5)


def test_odd_values_cannot_poison_a_flush(db: StateDB, recorder) -> None:
    rec = recorder()
    long_name = "s" * 500
    rec.record(long_name, "v\x001", "baseline", latency_s=math.nan, success=False, error_type="E" * 300,
               cost_usd=-1.0, at=T0)
    rec.record(long_name + "x", "v\x001", "baseline", latency_s=-3.0, success=True, cost_usd=math.inf, at=T0)
    rec.record("sig", "v1", "baseline", latency_s=math.inf, success=True, at=T0)
    rec.index_request("r" * 300, "sig", "v1", "baseline")
    assert rec.flush()
    stats = read_arm_stats(db, "s" * 200)[("v1", "baseline")]  # truncated names merge into one row
    assert (stats.requests, stats.errors, stats.cost_usd, stats.latency_mean_s) == (2, 1, 0.0, 0.0)
    assert list(stats.errors_by_type) == ["E" * 200]
    assert read_arm_stats(db, "sig")[("v1", "baseline")].latency_mean_s == 0.0
    assert lookup_request(db, "r" * 300) == ("sig", "v1", "baseline")


def test_close_flushes_and_is_idempotent(db: StateDB) -> None:
    rec = OutcomeRecorder(db, flush_interval_s=3600)
    rec.record("sig", "v1", "baseline", latency_s=0.1, success=True)
    rec.close()
    rec.close()
    assert read_arm_stats(db, "sig")[("v1", "baseline")].requests == 1
    with OutcomeRecorder(db) as again:
        again.record("sig", "v1", "baseline", latency_s=0.1, success=True)
    assert read_arm_stats(db, "sig")[("v1", "baseline")].requests == 2


def test_prune_outcomes(db: StateDB, recorder) -> None:
    rec = recorder()
    rec.record("sig", "v1", "baseline", latency_s=0.1, success=False, at=T0)
    rec.record("sig", "v1", "baseline", latency_s=0.1, success=True, at=T0 + 3600)
    assert rec.flush()
    assert prune_outcomes(db, older_than=T0 + 60) == 3  # one row in each of the three tables
    assert read_arm_stats(db, "sig")[("v1", "baseline")].requests == 1


def test_record_is_cheap(db: StateDB, recorder) -> None:
    rec = recorder()
    n = 20_000
    started = time.perf_counter()
    for i in range(n):
        rec.record("sig", "v1", "baseline", latency_s=0.001 * (i % 500), success=True, tokens_in=10)
    per_call = (time.perf_counter() - started) / n
    assert per_call < 50e-6, f"record() took {per_call * 1e6:.1f} µs"


def test_a_request_stays_visible_while_its_batch_is_being_written(db: StateDB, recorder) -> None:
    """Feedback arriving mid-flush must still find the arm (the batch left `pending` but is not committed yet)."""
    rec = recorder()
    rec.record("sig", "v1", "candidate", latency_s=0.01, success=True)
    rec.index_request("req-mid-flush", "sig", "v1", "candidate")
    writing, release = threading.Event(), threading.Event()
    real_write = rec._write

    def slow_write(batch):
        writing.set()
        release.wait(5)
        return real_write(batch)

    rec._write = slow_write
    flusher = threading.Thread(target=rec.flush)
    flusher.start()
    assert writing.wait(5)
    assert rec.lookup("req-mid-flush") == ("sig", "v1", "candidate")
    release.set()
    flusher.join(5)
    assert rec.lookup("req-mid-flush") == ("sig", "v1", "candidate")  # now from the database
