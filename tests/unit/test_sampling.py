"""Deterministic sampling: stable across processes, the configured share, per-signature rates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from unittest import mock

import pytest

from ratchet.config.settings import TelemetrySettings
from ratchet.hashing import stable_bucket
from ratchet.telemetry import sampling
from ratchet.telemetry.sampling import Sampler

IDS = [str(uuid.UUID(int=i * 7919 + 1)) for i in range(20_000)]


def test_same_request_id_same_answer_in_another_process() -> None:
    sampler = Sampler(0.3)
    ids = IDS[:300]
    here = [sampler.should_sample("sig", rid) for rid in ids]
    code = ("import json, sys; from ratchet.telemetry.sampling import Sampler; ids = json.load(sys.stdin); "
            "print(json.dumps([Sampler(0.3).should_sample('sig', r) for r in ids]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # Python's hash() would differ; ours must not
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(ids), capture_output=True, text=True,
                         check=True, env=env, timeout=60)
    assert json.loads(out.stdout) == here
    assert here == [Sampler(0.3).should_sample("sig", rid) for rid in ids]


def test_decision_is_the_bucket_threshold_rule() -> None:
    sampler = Sampler(0.1, salt="s")
    for rid in IDS[:500]:
        assert sampler.should_sample("x", rid) == (stable_bucket("s", rid) < 1000)


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.5])
def test_observed_share_matches_rate(rate: float) -> None:
    sampler = Sampler(rate)
    share = sum(sampler.should_sample("sig", rid) for rid in IDS) / len(IDS)
    assert abs(share - rate) < 0.01


def test_raising_the_rate_only_adds_requests() -> None:
    low = {rid for rid in IDS if Sampler(0.05).should_sample("s", rid)}
    high = {rid for rid in IDS if Sampler(0.10).should_sample("s", rid)}
    assert low < high


def test_salt_changes_the_selection() -> None:
    a = {rid for rid in IDS if Sampler(0.1).should_sample("s", rid)}
    b = {rid for rid in IDS if Sampler(0.1, salt="other").should_sample("s", rid)}
    assert a != b


def test_per_signature_overrides() -> None:
    sampler = Sampler(0.1, {"never": 0.0, "always": 1.0, "half": 0.5})
    assert sampler.rate_for("other") == 0.1
    assert sampler.rate_for("half") == 0.5
    assert not any(sampler.should_sample("never", rid) for rid in IDS[:1000])
    assert all(sampler.should_sample("always", rid) for rid in IDS[:1000])
    share = sum(sampler.should_sample("half", rid) for rid in IDS) / len(IDS)
    assert abs(share - 0.5) < 0.02


def test_rate_zero_does_not_hash() -> None:
    with mock.patch.object(sampling, "stable_bucket") as bucket:
        sampler = Sampler(0.0, {"on": 0.5, "off": 0.0})
        assert not sampler.should_sample("anything", "r1")
        assert not sampler.should_sample("off", "r2")
        bucket.assert_not_called()
        bucket.return_value = 0
        assert sampler.should_sample("on", "r3")
        bucket.assert_called_once()


@pytest.mark.parametrize("rate", [-0.1, 1.5, float("nan")])
def test_out_of_range_rates_are_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Sampler(rate)
    with pytest.raises(ValueError, match="'sig'"):
        Sampler(0.1, {"sig": rate})


def test_from_settings() -> None:
    settings = TelemetrySettings(sampling_rate=0.25, per_signature={"a": 1.0})
    sampler = Sampler.from_settings(settings)
    assert sampler.rate_for("b") == 0.25
    assert sampler.rate_for("a") == 1.0


def test_from_settings_disabled_samples_nothing() -> None:
    settings = TelemetrySettings(enabled=False, sampling_rate=1.0, per_signature={"a": 1.0})
    sampler = Sampler.from_settings(settings)
    assert sampler.rate_for("a") == 0.0
    assert sampler.rate_for("b") == 0.0
    assert not any(sampler.should_sample(sig, rid) for sig in ("a", "b") for rid in IDS[:100])
