"""Right to deletion end to end, on a real ``ratchet serve`` with the embedded model (SQLite and PostgreSQL).

User U sends distinctive texts and a correction, telemetry rotates to ``.gz``, a dataset is collected from
it; then ``DELETE /v1/users/U/data``. Afterwards no byte of U's texts (nor U's raw id) is anywhere under the
home — every file read, ``.gz`` decompressed — nor in the database (the SQLite file and its ``-wal``;
PostgreSQL's tables), while the other user's records are intact.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from ratchet.config import load_settings
from ratchet.data.collect.telemetry import TelemetryCollector
from ratchet.data.datasets import DatasetStore
from ratchet.data.records import read_batch
from ratchet.programs import load_programs
from ratchet.store.db import StateDB
from ratchet.store.pseudonyms import user_pseudonym
from ratchet.telemetry.logfiles import iter_log_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREDICT = "/v1/programs/classify_intent/predict"
U, V = "u-raw-7f3e-alice", "v-raw-2b9c-bob"
U_TEXTS = ["my zebrafrost card never arrived", "quokkalantern card still missing",
           "where is my xylowhisper card", "lost the narwhalsaffron card"]
V_TEXTS = ["my marmotcinder card never came", "where is the ottervelvet card"]


def _files(root: Path) -> list[tuple[Path, bytes]]:
    out = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            out.append((path, data + (gzip.decompress(data) if path.name.endswith(".gz") else b"")))
    return out


def _found(root: Path, needles: list[str]) -> list[str]:
    return [f"{path.relative_to(root)}: {n}" for path, data in _files(root) for n in needles if n.encode() in data]


def _feedback_records(directory: Path) -> int:
    """Feedback records written to the telemetry files so far."""
    count = 0
    for path in iter_log_files(directory):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # compressed meanwhile: count again
            return -1
        count += (gzip.decompress(data) if path.name.endswith(".gz") else data).count(b'"record":"feedback"')
    return count


def _wait(predicate, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def test_delete_user_leaves_no_byte_of_their_text(tmp_path: Path, ratchet_server, state_db_url: str) -> None:
    home = tmp_path / "state"
    config = tmp_path / "ratchet.toml"
    database = "" if state_db_url.startswith("sqlite") else f'database_url = "{state_db_url}"\n'
    config.write_text(f'home = "state"\n{database}[telemetry]\nsampling_rate = 1.0\nmax_file_mb = 0.002\n'
                      'flush_interval_s = 0.1\n[serve]\noutcome_flush_interval_s = 0.2\n')
    settings = load_settings(config)
    telemetry = home / "telemetry"
    with ratchet_server(config) as url:
        served: dict[str, list[str]] = {U: [], V: []}
        for user, texts in ((U, U_TEXTS), (V, V_TEXTS)):
            for text_ in texts:
                answer = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": text_}, "user_id": user}, timeout=60)
                assert answer.status_code == 200, answer.text
                served[user].append(answer.json()["request_id"])
        time.sleep(0.6)  # the request index is flushed: feedback matches its call
        for i, request_id in enumerate(served[U]):
            correction = {"intent": "lost_or_stolen_card"} if i == 0 else None
            assert httpx.post(f"{url}/v1/feedback", json={"request_id": request_id, "score": 1.0,
                                                          "correction": correction}).status_code == 202
        for request_id in served[V]:
            assert httpx.post(f"{url}/v1/feedback", json={"request_id": request_id, "score": 1.0}).status_code == 202
        _wait(lambda: any(p.name.endswith(".gz") for p in iter_log_files(telemetry))
              and _feedback_records(telemetry) == len(U_TEXTS) + len(V_TEXTS))
        registry = load_programs(settings)
        TelemetryCollector(iter_log_files(telemetry), registry, signature="classify_intent",
                           min_quality_score=0.5).collect(home / "runs" / "collected")
        examples = read_batch(home / "runs" / "collected" / "classify_intent.jsonl")
        assert {e.values["text"] for e in examples} >= {U_TEXTS[0], V_TEXTS[0]}
        DatasetStore(home, settings.data, registry=registry).create("classify_intent", examples, source="telemetry")
        assert _found(home, U_TEXTS[:1]) and "telemetry" in str(_found(home, U_TEXTS[:1]))

        started = time.perf_counter()
        answer = httpx.delete(f"{url}/v1/users/{U}/data", timeout=120)
        seconds = time.perf_counter() - started
        assert answer.status_code == 200, answer.text
        body = answer.json()
        steps = {s["step"]: s for s in body["steps"]}
        assert body["status"] == "ok" and body["user"] == user_pseudonym(settings, U)
        assert steps["find_requests"]["count"] == len(U_TEXTS) and steps["telemetry"]["count"] == len(U_TEXTS)
        assert steps["feedback_db"]["count"] == len(U_TEXTS) and steps["request_index"]["count"] == len(U_TEXTS)
        assert steps["datasets"]["count"] >= 1 and steps["feedback_telemetry"]["count"] >= 1
        print(f"deletion over HTTP: {seconds:.2f} s", json.dumps(body["steps"]))

    assert not (leftovers := _found(home, [*U_TEXTS, U])), leftovers
    assert len(_found(home, V_TEXTS)) >= 3  # V's telemetry, run file and dataset remain
    with StateDB.connect(settings) as db, db.begin() as conn:
        ids = ", ".join(f"'{rid}'" for rid in served[U])
        assert conn.scalar(text(f"SELECT count(*) FROM feedback WHERE request_id IN ({ids})")) == 0
        assert conn.scalar(text(f"SELECT count(*) FROM request_index WHERE request_id IN ({ids})")) == 0
        assert conn.scalar(text("SELECT count(*) FROM request_index WHERE user_pseudonym = :p"),
                           {"p": user_pseudonym(settings, V)}) == len(V_TEXTS)
    if state_db_url.startswith("sqlite"):
        for path in home.glob("ratchet.db*"):
            data = path.read_bytes()
            assert not [rid for rid in served[U] if rid.encode() in data], path
            assert user_pseudonym(settings, U).encode() not in data
