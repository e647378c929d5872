"""Issue 13, item 4, against a real uvicorn server: 429 over a client's rate, 503 when every call slot is taken,
413 for a field over its length — none of them an arm's request or failure — and failures that never show a
client the exception's text (scripted LM: no model needed)."""

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dspy
import httpx
import pytest
from dspy.lm15 import ServerError
from test_http_api import _wait_ready, intent_responder, running

from ratchet.auth import create_key
from ratchet.config import Settings
from ratchet.config.limits import KeyLimitSettings, SignatureLimitSettings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.serve import Runtime, metrics
from ratchet.serve.errors import public_message
from ratchet.store.outcomes import read_arm_stats
from ratchet.telemetry.writer import iter_log_files

SIG = "classify_intent"
PREDICT = f"/v1/programs/{SIG}/predict"
SECRET = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e at /home/alice/.config/ratchet/credentials.json"
LEAKS = ("sk-live", "4f9a8b7c6d5e", "/home/alice", "credentials.json", "Traceback")


@pytest.fixture
def serve(tmp_path: Path, free_port) -> Iterator:
    runtimes: list[Runtime] = []

    @contextmanager
    def start(configure: Callable[[Settings], None] = lambda s: None, responder=intent_responder, ready: bool = True,
              **engine_kwargs) -> Iterator[tuple[str, Runtime, ScriptedEngine]]:
        settings = Settings(home=tmp_path / "home")
        settings.telemetry.sampling_rate = 1.0
        settings.serve.request_timeout_s = 10
        configure(settings)
        engine = ScriptedEngine(responder, **engine_kwargs)
        lm = dspy.LM("scripted/limits", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                     num_retries=0)
        runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter()))
        runtimes.append(runtime)
        with running(runtime, free_port()) as url:
            assert _wait_ready(url).status_code == (200 if ready else 503)
            yield url, runtime, engine

    yield start
    for runtime in runtimes:
        runtime.close()


def _served(arm: str = "baseline") -> float:
    return metrics.REQUESTS.labels(SIG, "Predict", arm)._value.get()


def _failed(arm: str = "baseline") -> float:
    return sum(sample.value for sample in metrics.ERRORS.collect()[0].samples
               if sample.labels.get("signature") == SIG and sample.labels.get("arm") == arm
               and sample.name.endswith("_total"))


def _rejected(reason: str) -> float:
    return metrics.REJECTED.labels(SIG, "baseline", reason)._value.get()


def _arm_totals(runtime: Runtime) -> tuple[int, int]:
    runtime.flush()
    stats = read_arm_stats(runtime.db, SIG).values()
    return sum(s.requests for s in stats), sum(s.errors for s in stats)


def _ask(url: str, text: str = "where is my card", **kwargs) -> httpx.Response:
    return httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": text}}, timeout=30, **kwargs)


def test_over_its_rate_a_client_gets_429_with_retry_after_and_no_arm_counts_it(serve) -> None:
    def configure(settings: Settings) -> None:
        settings.limits.requests_per_minute = 6  # one every 10 s
        settings.limits.burst = 3
        settings.limits.keys = {"ci": KeyLimitSettings(burst=8)}

    with serve(configure) as (url, runtime, engine):
        served, failed = _served(), _failed()
        limited = metrics.RATE_LIMITED.labels("predict", "anonymous")._value.get()
        assert [_ask(url).status_code for _ in range(3)] == [200, 200, 200]
        refused = _ask(url)
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"] == "rate_limited" and refused.headers["Retry-After"] == "10"
        feedback = httpx.post(f"{url}/v1/feedback", json={"request_id": "r-1", "score": 1.0})
        assert feedback.status_code == 429 and 1 <= int(feedback.headers["Retry-After"]) <= 10  # one bucket
        assert httpx.get(f"{url}/health").status_code == 200 and httpx.get(f"{url}/ready").status_code == 200
        assert engine.calls == 3 and _served() == served + 3 and _failed() == failed
        assert _arm_totals(runtime) == (3, 0)
        assert metrics.RATE_LIMITED.labels("predict", "anonymous")._value.get() == limited + 1
        assert metrics.RATE_LIMITED.labels("feedback", "anonymous")._value.get() >= 1
        assert 'ratchet_rate_limited_total{endpoint="predict",key="anonymous"}' in httpx.get(f"{url}/metrics").text

        ci, _ = create_key(runtime.db, "ci", ["predict"], created_by="test")
        web, _ = create_key(runtime.db, "web", ["predict"], created_by="test")
        keyed = [_ask(url, headers={"X-API-Key": ci}).status_code for _ in range(9)]  # its own bucket and burst
        assert keyed == [200] * 8 + [429]
        other = [_ask(url, headers={"X-API-Key": web}).status_code for _ in range(4)]  # [limits]'s burst
        assert other == [200] * 3 + [429]
        assert metrics.RATE_LIMITED.labels("predict", "ci")._value.get() >= 1
        assert _arm_totals(runtime) == (14, 0)


def test_saturated_call_slots_answer_503_with_retry_after_and_no_arm_counts_it(serve) -> None:
    def configure(settings: Settings) -> None:
        settings.serve.max_concurrent_calls = 2
        settings.serve.queue_wait_s = 0.3

    with serve(configure, latency_s=1.5) as (url, runtime, engine):
        served, failed, overloaded = _served(), _failed(), _rejected("overloaded")
        answers: list[httpx.Response] = []
        lock = threading.Lock()

        def ask() -> None:
            answer = _ask(url)
            with lock:
                answers.append(answer)

        threads = [threading.Thread(target=ask) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(a.status_code for a in answers)
        assert statuses == [200, 200, 503, 503, 503, 503], [a.text for a in answers]
        for busy in (a for a in answers if a.status_code == 503):
            body = busy.json()
            assert body["error"] == "overloaded" and body["request_id"] and "2 call slots" in body["message"]
            assert int(busy.headers["Retry-After"]) >= 1
        assert engine.calls == 2 and _served() == served + 2 and _failed() == failed
        assert _rejected("overloaded") == overloaded + 4
        assert _arm_totals(runtime) == (2, 0)
        assert _ask(url).status_code == 200  # the slots were given back


def test_a_request_waits_for_a_slot_within_queue_wait(serve) -> None:
    def configure(settings: Settings) -> None:
        settings.serve.max_concurrent_calls = 1
        settings.serve.queue_wait_s = 5.0

    with serve(configure, latency_s=0.3) as (url, runtime, _):
        answers: list[int] = []
        threads = [threading.Thread(target=lambda: answers.append(_ask(url).status_code)) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert answers == [200, 200, 200] and runtime.gate.active == 0


def test_a_field_over_its_length_is_413_naming_it_before_any_lm_call_or_write(serve) -> None:
    def configure(settings: Settings) -> None:
        settings.limits.max_field_chars = 100
        settings.limits.max_correction_chars = 40
        settings.limits.signatures = {SIG: SignatureLimitSettings(fields={"text": 20})}

    with serve(configure) as (url, runtime, engine):
        served, too_long = _served(), _rejected("field_too_long")
        refused = _ask(url, "my card was stolen " + "MARKER" * 3)  # 37 characters
        assert refused.status_code == 413, refused.text
        body = refused.json()
        assert (body["error"], body["field"], body["limit"], body["length"]) == ("field_too_long", "text", 20, 37)
        other = httpx.post(f"{url}/v1/programs/extract_booking/predict", json={"inputs": {"text": "y" * 101}})
        assert other.status_code == 413 and other.json()["limit"] == 100  # [limits]'s default
        wrong_type = httpx.post(f"{url}{PREDICT}", json={"inputs": {"text": 5}})
        assert wrong_type.status_code == 422 and wrong_type.json()["field"] == "text"
        assert engine.calls == 0 and _served() == served and _rejected("field_too_long") == too_long + 1

        ok = _ask(url, "my card was stolen")
        assert ok.status_code == 200
        booking = httpx.post(f"{url}/v1/programs/extract_booking/predict", json={"inputs": {"text": "a table"}})
        assert booking.status_code == 200, booking.text  # free-text outputs: a long correction is well typed
        long_correction = httpx.post(f"{url}/v1/feedback", json={
            "request_id": booking.json()["request_id"], "score": 0.0, "correction": {"people": "MARKER" * 10}})
        assert long_correction.status_code == 413 and long_correction.json()["field"] == "correction"
        assert long_correction.json()["limit"] == 40
        runtime.flush()
        stats = read_arm_stats(runtime.db, SIG)
        assert sum(s.requests for s in stats.values()) == 1 and sum(s.quality_count for s in stats.values()) == 0
        written = "".join(path.read_text(errors="replace") for path in iter_log_files(runtime.telemetry.directory)
                          if path.suffix != ".gz")
        assert "my card was stolen" in written and "MARKER" not in written  # sampled at 100 %: only the good one


def _raise_secret(prompt: str) -> Exception:
    return RuntimeError(SECRET)


async def _program_bug(*args, **kwargs):
    raise KeyError(SECRET)


@pytest.mark.parametrize(("kwargs", "bug", "status", "error_type"), [
    ({"error": ServerError(SECRET)}, False, 502, "lm_error"),
    ({"error": _raise_secret}, False, 502, "lm_error"),  # any engine exception: DSPy wraps it as an LM error
    ({"responder": lambda prompt: f" {SECRET}"}, False, 502, "parse_error"),
    ({}, True, 500, "internal"),
], ids=["provider_error", "engine_bug", "parse_error", "program_bug"])
def test_a_failure_never_shows_the_exception_text_which_goes_to_the_log(serve, caplog, monkeypatch, kwargs, bug,
                                                                        status, error_type) -> None:
    with caplog.at_level(logging.WARNING), serve(**kwargs) as (url, runtime, _):
        if bug:
            monkeypatch.setattr(runtime, "_run_async", _program_bug)
        failed = _ask(url)
        assert failed.status_code == status, failed.text
        body = failed.json()
        assert body["error"] == error_type and body["message"] == public_message(error_type)  # an ErrorBody
        assert not any(leak in failed.text for leak in LEAKS), failed.text
        logged = [r for r in caplog.records if body["request_id"] in r.getMessage()]
        assert logged and SECRET in logged[0].getMessage() and logged[0].exc_info is not None


def test_an_unhandled_error_shows_no_exception_text(serve, caplog, monkeypatch) -> None:
    with caplog.at_level(logging.WARNING), serve() as (url, runtime, _):
        async def broken(*args, **kwargs):
            raise RuntimeError(SECRET)

        monkeypatch.setattr(runtime, "acall", broken)
        failed = _ask(url)
        assert failed.status_code == 500 and failed.json()["error"] == "internal" and failed.json()["request_id"]
        assert not any(leak in failed.text for leak in LEAKS), failed.text
        assert any(failed.json()["request_id"] in r.getMessage() and r.exc_info for r in caplog.records)


def test_a_failed_warm_up_shows_no_exception_text(serve, caplog, monkeypatch) -> None:
    def warm_up(self, on_phase=None):
        raise OSError(SECRET)

    monkeypatch.setattr(Runtime, "warm_up", warm_up)
    with caplog.at_level(logging.WARNING), serve(ready=False) as (url, _, _):
        ready = _wait_ready(url)
        assert ready.status_code == 503 and ready.json()["warm_up"]["error"] == "warm_up_failed"
        assert not any(leak in ready.text for leak in LEAKS), ready.text
        assert any(SECRET in r.getMessage() or (r.exc_info and SECRET in str(r.exc_info[1])) for r in caplog.records)
