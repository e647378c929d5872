"""Issue 13's probes on a real ``ratchet serve`` with the embedded model: a 30 KB text is refused with 413 before
any LM call (the model's own tokenizer counts its prompt) and counts as no arm's failure; a lone surrogate is 422."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
import pytest

from ratchet.config import load_settings
from ratchet.store.db import StateDB
from ratchet.store.outcomes import read_arm_stats

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREDICT = "/v1/programs/classify_intent/predict"


def _total(metrics_text: str, name: str, **labels: str) -> float:
    total = 0.0
    for label_text, value in re.findall(rf"^{name}\{{([^}}]*)\}} ([0-9.e+]+)$", metrics_text, re.M):
        if all(f'{k}="{v}"' in label_text for k, v in labels.items()):
            total += float(value)
    return total


def test_a_30_kb_text_is_413_before_any_lm_call_and_no_arm_failure(tmp_path: Path, ratchet_server) -> None:
    config = tmp_path / "ratchet.toml"
    config.write_text('home = "state"\n[serve]\noutcome_flush_interval_s = 0.5\n')
    with ratchet_server(config) as url:
        ok = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": "where is my card"}}, timeout=60)
        assert ok.status_code == 200, ok.text
        before = httpx.get(f"{url}/metrics").text
        started = time.perf_counter()
        text = " ".join(f"card{i} arrived late" for i in range(1800))
        assert 30_000 <= len(text.encode()) < 1_048_576
        long = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": text}}, timeout=60)
        elapsed = time.perf_counter() - started
        assert long.status_code == 413, long.text
        body = long.json()
        assert body["error"] == "input_too_long" and body["field"] == "text" and "Traceback" not in long.text
        assert body["tokens"] > body["limit"] and body["limit"] == 4096 - 256  # n_ctx minus lm.max_tokens
        assert elapsed < 5  # counted, not computed: a 4 k-token prefill alone takes longer on 2 cores
        surrogate = httpx.post(f"{url}{PREDICT}", content=b'{"inputs": {"text": "\\ud800"}}',
                               headers={"content-type": "application/json"}, timeout=30)
        assert surrogate.status_code == 422 and surrogate.json()["error"] == "invalid_text"
        after = httpx.get(f"{url}/metrics").text
        for name in ("dspy_requests_total", "dspy_request_errors_total", "dspy_tokens_total"):
            assert _total(after, name) == _total(before, name), name  # no LM call, no arm request or failure
        assert _total(after, "ratchet_rejected_requests_total", reason="input_too_long") == 1
        assert _total(after, "ratchet_rejected_requests_total", reason="invalid_text") == 1
        time.sleep(1.5)  # counters flushed
    stats = read_arm_stats(StateDB.connect(load_settings(config)), "classify_intent")[("base", "baseline")]
    assert stats.requests == 1 and stats.errors == 0
