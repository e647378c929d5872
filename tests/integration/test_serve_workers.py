"""`ratchet serve --workers 2` on the embedded model: totals add up across processes."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from ratchet.config import load_settings
from ratchet.store.db import StateDB
from ratchet.store.jsonl import read_jsonl
from ratchet.store.outcomes import read_arm_stats
from ratchet.telemetry.writer import iter_log_files

pytestmark = [pytest.mark.integration, pytest.mark.slow]

TEXTS = ["where is my card", "I lost my card", "what is the exchange rate", "my pin is blocked",
         "close my account", "can I use apple pay", "how old must I be", "cancel my transfer"]


def _total(metrics_text: str, name: str) -> float:
    return sum(float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} ([0-9.e+]+)$", metrics_text, re.M))


def test_two_workers_count_every_request_once(tmp_path: Path, ratchet_server) -> None:
    config = tmp_path / "ratchet.toml"
    config.write_text('home = "state"\n[telemetry]\nsampling_rate = 1.0\n[serve]\noutcome_flush_interval_s = 0.5\n')
    with ratchet_server(config, "--workers", "2") as url:
        def ask(i: int) -> str:
            body = {"inputs": {"text": TEXTS[i % len(TEXTS)]}, "request_id": f"req-{i}"}
            response = httpx.post(f"{url}/v1/programs/classify_intent/predict", json=body, timeout=60)
            assert response.status_code == 200, response.text
            request_id = response.json()["request_id"]  # issued by whichever worker answered: any worker accepts it
            feedback = httpx.post(f"{url}/v1/feedback", json={"request_id": request_id, "score": 1.0}, timeout=30)
            assert feedback.status_code == 202, feedback.text
            return request_id

        with ThreadPoolExecutor(max_workers=4) as pool:
            issued = set(pool.map(ask, range(24)))
            assert len(issued) == 24

        for _ in range(4):  # whichever worker answers, it reports the totals of both
            text = httpx.get(f"{url}/metrics").text
            assert _total(text, "dspy_requests_total") == 24
            assert _total(text, "dspy_request_duration_seconds_count") == 24
        time.sleep(4)  # counters flushed (0.5 s) and cross-worker feedback matched for telemetry (~1.5 s)

    settings = load_settings(config)
    stats = read_arm_stats(StateDB.connect(settings), "classify_intent")[("base", "baseline")]
    assert stats.requests == 24 and stats.quality_count == 24 and stats.quality_mean == 1.0
    records = [r for path in iter_log_files(settings.home_dir / "telemetry") for r in read_jsonl(path)[0]]
    assert sorted(r["request_id"] for r in records if r["record"] == "interaction") == sorted(issued)
    assert sorted(r["request_id"] for r in records if r["record"] == "feedback") == sorted(issued)
