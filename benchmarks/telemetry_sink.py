"""What the shared telemetry sink costs against per-host files, with an instant scripted LM.

    python benchmarks/telemetry_sink.py [--requests 2000]

For each sink (``files``: JSON Lines under the home; ``database``: the ``telemetry_records`` table of a
PostgreSQL state database on 127.0.0.1:5432, a fresh schema dropped afterwards):
(a) the request path: ``Runtime.call`` latency p50/p99 at sampling 100 % (the record is only queued; the
    writer thread does the I/O), and its throughput on one thread;
(b) the writer thread: seconds to write a batch of 1 and of 512 records (files: one append; database:
    one INSERT transaction);
(c) storage per 1,000 requests at sampling 10 % and 100 %: rows and bytes (files: the file's bytes;
    database: the table with its indexes, ``pg_total_relation_size``).
Results go to benchmarks/results/telemetry_sink.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import secrets
import statistics
import tempfile
import time
from pathlib import Path

import dspy
import psycopg

from ratchet.config import Settings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.serve import Runtime
from ratchet.store.db import StateDB
from ratchet.telemetry.database import DatabaseSink
from ratchet.telemetry.logfiles import serialize
from ratchet.telemetry.writer import TelemetryWriter

TEXT = "I still have not received my new card, it has been two weeks. Where is it? Reference {i}"
RESULTS = Path(__file__).parent / "results" / "telemetry_sink.json"


def _lm() -> dspy.LM:
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    return dspy.LM("scripted/bench", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)


def _runtime(home: Path, url: str | None, sink: str, rate: float) -> Runtime:
    settings = Settings(home=home, database_url=url)
    settings.telemetry.sampling_rate = rate
    settings.telemetry.sink = sink  # type: ignore[assignment]
    return Runtime(settings, lms=LMBundle.for_lm(_lm(), CompletionAdapter()))


def _table_bytes(url: str) -> tuple[int, int]:
    with StateDB(url) as db, db.begin() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM telemetry_records").scalar_one()
        size = conn.exec_driver_sql("SELECT pg_total_relation_size('telemetry_records')").scalar_one()
    return int(rows), int(size)


def _request_path(root: Path, url: str, sink: str, n: int) -> dict[str, float]:
    runtime = _runtime(root / f"path-{sink}", url, sink, 1.0)
    for i in range(50):  # warm
        runtime.call("classify_intent", {"text": TEXT.format(i=i)})
    times = []
    started = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        runtime.call("classify_intent", {"text": TEXT.format(i=i)}, user_id=f"user-{i % 97}")
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    t0 = time.perf_counter()
    runtime.flush(timeout=60)
    drain = time.perf_counter() - t0
    runtime.close()
    times.sort()
    return {"p50_ms": round(statistics.median(times) * 1000, 3), "p99_ms": round(times[int(n * 0.99)] * 1000, 3),
            "requests_per_s": round(n / wall, 1), "drain_after_s": round(drain, 3)}


def _batches(root: Path, url: str) -> dict[str, dict[str, float]]:
    record = {"record": "interaction", "signature": "classify_intent", "request_id": "r" * 36, "arm": "baseline",
              "input": {"text": TEXT.format(i=0)}, "output": {"intent": "card_arrival"}, "success": True,
              "timestamp_ms": int(time.time() * 1000), "latency_ms": 1.2, "user_pseudonym": "u" * 32}
    out: dict[str, dict[str, float]] = {}
    with StateDB(url) as db:
        sink = DatabaseSink(db)
        files = TelemetryWriter(root / "batch-files")
        for size in (1, 512):
            lines, records = [serialize(record)] * size, [record] * size
            for name, write in (("database", lambda lines=lines, records=records: sink.write(lines, records)),
                                ("files", lambda records=records: files._write_batch(records))):
                runs = []
                for _ in range(20):
                    t0 = time.perf_counter()
                    write()
                    runs.append(time.perf_counter() - t0)
                out.setdefault(name, {})[f"batch_{size}_ms"] = round(statistics.median(runs) * 1000, 3)
        files.close()
    return out


def _storage(root: Path, url: str, rate: float) -> dict[str, dict[str, float]]:
    out = {}
    before_rows, before_bytes = _table_bytes(url)
    for sink in ("files", "database"):
        home = root / f"store-{sink}-{rate}"
        runtime = _runtime(home, url, sink, rate)
        for i in range(1000):
            runtime.call("classify_intent", {"text": TEXT.format(i=i)}, user_id=f"user-{i}")
        runtime.flush(timeout=60)
        runtime.close()
        if sink == "files":
            files = list((home / "telemetry").glob("interactions*"))
            rows = sum(p.read_bytes().count(b"\n") for p in files)
            out[sink] = {"rows": rows, "bytes": sum(p.stat().st_size for p in files)}
        else:
            rows, size = _table_bytes(url)
            out[sink] = {"rows": rows - before_rows, "bytes": size - before_bytes}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    schema = f"bench_{secrets.token_hex(4)}"
    with psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user="postgres", autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/test?options=-csearch_path%3D{schema}"
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            result = {
                "machine": f"{platform.machine()} · {platform.python_version()}",
                "request_path": {sink: _request_path(root, url, sink, args.requests) for sink in ("files", "database")},
                "writer_batches": _batches(root, url),
                "per_1000_requests": {f"sampling_{int(rate * 100)}pct": _storage(root, url, rate)
                                      for rate in (0.1, 1.0)},
            }
    finally:
        with psycopg.connect(host="127.0.0.1", port=5432, dbname="test", user="postgres", autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
