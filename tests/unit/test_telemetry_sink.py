"""The shared telemetry sink: the writer inserts batches into the state database; readers see every host's records."""

import json
import time
from pathlib import Path

from ratchet.config import Settings
from ratchet.store.db import StateDB
from ratchet.telemetry.database import DatabaseSink, database_sink, sink_of, telemetry_view
from ratchet.telemetry.writer import TelemetryWriter, iter_log_files


def _record(i: int, *, at_ms: int | None = None, user: str | None = None) -> dict:
    return {"record": "interaction", "signature": "classify_intent", "request_id": f"r{i}", "input": {"text": f"t{i}"},
            "output": {"intent": "x"}, "timestamp_ms": at_ms or int(time.time() * 1000), "success": True,
            **({"user_pseudonym": user} if user else {})}


def test_the_sink_is_chosen_by_settings(tmp_path: Path, postgres_url: str) -> None:
    assert sink_of(Settings(home=tmp_path)) == "files" and database_sink(Settings(home=tmp_path)) is None
    assert sink_of(Settings(home=tmp_path, database_url=postgres_url)) == "files"  # the default: opt in
    settings = Settings(home=tmp_path, database_url=postgres_url)
    settings.telemetry.sink = "auto"
    assert sink_of(settings) == "database" and sink_of(Settings(home=tmp_path, telemetry={"sink": "auto"})) == "files"


def test_hosts_write_batches_and_any_host_reads_them_all_in_order(tmp_path: Path, postgres_url: str) -> None:
    settings = Settings(home=tmp_path / "reader", database_url=postgres_url, telemetry={"sink": "database"})
    with StateDB(postgres_url) as db:
        writers = [TelemetryWriter(tmp_path / h / "telemetry", sink=DatabaseSink(db, host=h), batch_size=7)
                   for h in ("a", "b")]
        for i in range(40):
            writers[i % 2].submit(_record(i))
        for writer in writers:
            writer.close()
            assert writer.stats()["written"] == 20 and not list(writer.directory.iterdir())
        with telemetry_view(settings, db) as view:
            records = [json.loads(line) for path in iter_log_files(view) for line in path.read_text().splitlines()]
            assert view.stat().st_mode & 0o777 == 0o700
        assert sorted(r["request_id"] for r in records) == sorted(f"r{i}" for i in range(40))
        assert not view.exists()
        old = int((time.time() - 10 * 86400) * 1000)
        DatabaseSink(db).write([json.dumps(_record(99, at_ms=old)).encode() + b"\n"], [_record(99, at_ms=old)])
        with telemetry_view(settings, db, since_ms=old + 1) as view:
            assert len((view / "interactions.jsonl").read_text().splitlines()) == 40
        writer = TelemetryWriter(tmp_path / "c", sink=DatabaseSink(db), max_age_days=5)
        writer.apply_retention()
        writer.close()
        assert DatabaseSink(db).count() == 40 and writer.stats()["deleted"] == 1


def test_an_unreachable_database_drops_the_batch_and_counts_it(tmp_path: Path, postgres_url: str) -> None:
    class Down(DatabaseSink):
        def write(self, lines, records):
            raise OSError("connection refused")

    with StateDB(postgres_url) as db:
        writer = TelemetryWriter(tmp_path / "t", sink=Down(db))
        writer.retry_delays_s = (0.01,)
        writer.submit(_record(1))
        writer.close()
    stats = writer.stats()
    assert stats["written"] == 0 and stats["dropped"] == 1 and stats["write_errors"] == 2


def test_purge_by_pseudonym_and_request_id(postgres_url: str) -> None:
    with StateDB(postgres_url) as db:
        store = DatabaseSink(db)
        rows = [_record(1, user="p1"), _record(2, user="p2"), {**_record(1), "record": "feedback"}]
        store.write([json.dumps(r).encode() + b"\n" for r in rows], rows)
        assert [r["request_id"] for r in store.find({"p1"})] == ["r1"]
        removed, records = store.purge({"p1"}, {"r1"})
        assert removed == {"interactions": 1, "feedback": 1} and len(records) == 2
        assert store.count() == 1
