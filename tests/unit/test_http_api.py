"""The HTTP API under a real uvicorn server on a free loopback port (scripted LM: no model needed)."""

import json
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dspy
import httpx
import pytest
import uvicorn
from dspy.lm15 import ServerError
from typer.testing import CliRunner

from ratchet.cli.main import app as cli
from ratchet.config import Settings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine
from ratchet.serve import Runtime
from ratchet.serve.app import create_app


def intent_responder(prompt: str) -> str:
    text = prompt.rsplit("Text:", 1)[-1]
    return " lost_or_stolen_card" if "stolen" in text else " card_arrival"


@contextmanager
def running(runtime: Runtime, port: int) -> Iterator[str]:
    config = uvicorn.Config(create_app(runtime=runtime), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def server(tmp_path: Path, free_port) -> Iterator:
    runtimes: list[Runtime] = []

    @contextmanager
    def start(responder=intent_responder, *, fallback: dspy.LM | None = None, max_body_bytes: int = 4096,
              database_url: str | None = None, **engine_kwargs) -> Iterator[tuple[str, Runtime]]:
        settings = Settings(home=tmp_path / "home", database_url=database_url)
        settings.serve.request_timeout_s = 0.5
        settings.serve.max_body_bytes = max_body_bytes
        settings.telemetry.sampling_rate = 1.0
        engine = ScriptedEngine(responder, **engine_kwargs)
        lm = dspy.LM("scripted/http", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                     num_retries=0)
        runtime = Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter(), fallback=fallback))
        runtimes.append(runtime)
        with running(runtime, free_port()) as url:
            yield url, runtime

    yield start
    for runtime in runtimes:
        runtime.close()


def test_predict_and_feedback(server) -> None:
    with server() as (url, _runtime):
        response = httpx.post(f"{url}/v1/programs/classify_intent/predict",
                              json={"inputs": {"text": "my card was stolen"}, "user_id": "u-1"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["outputs"] == {"intent": "lost_or_stolen_card"}
        assert body["arm"] == "baseline" and body["version"] == "base" and body["success"]
        assert body["tokens"]["input"] > 0 and body["latency_ms"] > 0
        feedback = httpx.post(f"{url}/v1/feedback", json={"request_id": body["request_id"], "score": 1.0,
                                                          "correction": {"intent": "lost_or_stolen_card"}})
        assert feedback.status_code == 202 and feedback.json()["matched"]
        bad = httpx.post(f"{url}/v1/feedback", json={"request_id": body["request_id"], "score": 3})
        assert bad.status_code == 422 and bad.json()["field"] == "score"
        bad = httpx.post(f"{url}/v1/feedback", json={"request_id": body["request_id"], "score": 0.5,
                                                     "correction": {"intent": "nonsense"}})
        assert bad.status_code == 422 and "intent" in bad.json()["message"]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"inputs": {}}, "text", "missing field 'text'"),
        ({"inputs": {"text": "x", "txt": "y"}}, "txt", "unknown field 'txt'"),
        ({"inputs": {"text": 42}}, "text", "field 'text'"),
        ({"input": {"text": "x"}}, "input", "unknown field 'input'"),
        ({"inputs": {"text": "x"}, "request_id": ""}, "request_id", "field 'request_id'"),
    ],
)
def test_invalid_requests_are_422_naming_the_field(server, body, field, message) -> None:
    with server() as (url, _):
        response = httpx.post(f"{url}/v1/programs/classify_intent/predict", json=body)
        assert response.status_code == 422
        assert response.json()["field"] == field
        assert message in response.json()["message"]


def test_unknown_signature_is_404(server) -> None:
    with server() as (url, _):
        response = httpx.post(f"{url}/v1/programs/classify_intnet/predict", json={"inputs": {"text": "x"}})
        assert response.status_code == 404
        assert "classify_intent" in response.json()["registered"]


def test_large_bodies_are_413(server) -> None:
    with server(max_body_bytes=2048) as (url, _runtime):
        big = {"inputs": {"text": "x" * 5000}}
        assert httpx.post(f"{url}/v1/programs/classify_intent/predict", json=big).status_code == 413

        def chunks():
            yield b'{"inputs": {"text": "'
            for _ in range(10):
                yield b"y" * 500
            yield b'"}}'

        streamed = httpx.post(f"{url}/v1/programs/classify_intent/predict", content=chunks(),
                              headers={"content-type": "application/json"})
        assert streamed.status_code == 413
        ok = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "small"}})
        assert ok.status_code == 200


def test_lm_timeout_is_504_and_failure_502_both_counted(server) -> None:
    with server(latency_s=2.0) as (url, runtime):
        response = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}},
                              timeout=10)
        assert response.status_code == 504 and response.json()["error"] == "timeout"
    with server(error=ServerError("upstream down")) as (url, runtime):
        response = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}})
        assert response.status_code == 502 and response.json()["error"] == "lm_error"
        metrics = httpx.get(f"{url}/metrics").text
        assert 'error_type="lm_error"' in metrics and 'error_type="timeout"' in metrics
        runtime.flush()
        from ratchet.store.outcomes import read_arm_stats

        stats = read_arm_stats(runtime.db, "classify_intent")[("base", "baseline")]
        assert stats.errors_by_type == {"timeout": 1, "lm_error": 1}


def test_fallback_lm_serves_when_the_primary_fails(server) -> None:
    engine = ScriptedEngine(lambda p: " pin_blocked")
    fallback = dspy.LM("scripted/fallback", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False)
    with server(error=ServerError("primary down"), fallback=fallback) as (url, _):
        response = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}})
        assert response.status_code == 200
        assert response.json()["fallback_used"] and response.json()["model"] == "scripted/fallback"
        assert 'ratchet_lm_fallback_total{signature="classify_intent"}' in httpx.get(f"{url}/metrics").text


def _wait_ready(url: str, timeout_s: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = httpx.get(f"{url}/ready", timeout=timeout_s)
        if response.status_code == 200 or response.json().get("status") != "starting" or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_ready_reports_each_dependency_and_health_only_liveness(server) -> None:
    with server() as (url, runtime):
        ready = _wait_ready(url)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"
        checks = ready.json()["checks"]
        assert checks["model"]["ok"] and checks["state_db"]["ok"] and checks["telemetry"]["ok"]
        warmed = ready.json()["warm_up"]["warmed"]
        assert {"signature": "classify_intent", "arm": "baseline", "version": "base"} in warmed
        telemetry = runtime.telemetry.directory
        shutil.rmtree(telemetry)
        telemetry.write_text("a file where the directory should be")
        down = httpx.get(f"{url}/ready")
        assert down.status_code == 503 and not down.json()["checks"]["telemetry"]["ok"]
        alive = httpx.get(f"{url}/health")
        assert alive.status_code == 200 and alive.json()["ready"]  # alive all along: a restart would not help
        telemetry.unlink()
        assert httpx.get(f"{url}/ready").status_code == 200


def test_ready_is_503_when_the_state_database_is_down(server, free_port) -> None:
    nobody_listens = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test?connect_timeout=2"
    with server(database_url=nobody_listens) as (url, _):
        down = _wait_ready(url)
        assert down.status_code == 503
        checks = down.json()["checks"]
        assert not checks["state_db"]["ok"] and "OperationalError" in checks["state_db"]["detail"]
        assert checks["model"]["ok"] and checks["telemetry"]["ok"]
        assert httpx.get(f"{url}/health").status_code == 200
        served = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}})
        assert served.status_code == 200  # counters wait in memory; requests are still answered


def test_a_model_crash_in_the_self_test_leaves_a_live_server_that_says_why(tmp_path, free_port, monkeypatch) -> None:
    """The embedded engine's self-test child dies of SIGSEGV: the server stays up, un-ready, and explains."""
    import os

    from fake_llama import install
    from ratchet.lm import LlamaCppEngine

    fake = install(tmp_path / "fake", crash="complete")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(fake), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("RATCHET_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    engine = LlamaCppEngine(tmp_path / "model.gguf", model_id="llamacpp/fake", weights_sha256="2" * 64)
    lm = dspy.LM("llamacpp/fake", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                 num_retries=0)
    bundle = LMBundle.for_lm(lm, CompletionAdapter())
    bundle.engine = engine
    runtime = Runtime(Settings(home=tmp_path / "home"), lms=bundle)
    try:
        with running(runtime, free_port()) as url:
            ready = _wait_ready(url)
            assert ready.status_code == 503
            warm_up = ready.json()["warm_up"]
            assert ready.json()["status"] == "failed" and warm_up["error"] == "model_not_available"
            assert "SIGSEGV (segmentation fault) during the first completion" in warm_up["message"]
            assert "lm.local.extra_buffers" in warm_up["message"] and "CPU: " in warm_up["message"]
            predict = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}})
            assert predict.status_code == 503 and predict.json()["error"] == "model_not_available"
            assert "SIGSEGV" not in predict.text and "Traceback" not in predict.text  # the why is /ready's
            health = httpx.get(f"{url}/health")
            assert health.status_code == 200 and health.json()["phase"] == "failed"  # never went down
    finally:
        runtime.close()


def test_programs_metrics_and_openapi(server) -> None:
    with server() as (url, _):
        httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}})
        programs = httpx.get(f"{url}/v1/programs").json()["programs"]
        intent = next(p for p in programs if p["signature"] == "classify_intent")
        assert intent["production_version"] == "base" and intent["routing"] is None
        text = httpx.get(f"{url}/metrics").text
        for name in ("dspy_requests_total", "dspy_request_duration_seconds_bucket", "dspy_tokens_total",
                     "dspy_module_version", "ratchet_telemetry_sampled_total", "ratchet_telemetry_redactions_total"):
            assert name in text, name
        schema = httpx.get(f"{url}/openapi.json").json()
        assert "/v1/programs/extract_booking/predict" in schema["paths"]
        assert "ClassifyIntentPredictRequest" in json.dumps(schema["components"])


def test_loadtest_cli_against_a_server_with_a_baseline(server, tmp_path: Path) -> None:
    runner = CliRunner()
    with server() as (url, _):
        first = runner.invoke(cli, ["loadtest", "--signature", "classify_intent", "--queries", "30",
                                    "--concurrency", "4", "--target", url, "--feedback-from-labels", "--json",
                                    "--save", str(tmp_path / "base.json")])
        assert first.exit_code == 0, first.output
        report = json.loads(first.stdout)
        assert report["completed"] == 30 and report["errors"] == 0 and report["feedback_sent"] == 30
        assert report["latency_ms"]["p50"] <= report["latency_ms"]["p95"] <= report["latency_ms"]["p99"]
        baseline = json.loads((tmp_path / "base.json").read_text())
        baseline["latency_ms"]["p95"] = 0.01  # pretend it used to answer in 10 µs
        (tmp_path / "fast.json").write_text(json.dumps(baseline))
        baseline["latency_ms"]["p95"] = 60_000.0  # ... or in a minute
        (tmp_path / "slow.json").write_text(json.dumps(baseline))
        fine = runner.invoke(cli, ["loadtest", "--signature", "classify_intent", "--queries", "10",
                                   "--target", url, "--baseline", str(tmp_path / "slow.json"), "--json"])
        assert fine.exit_code == 0 and not json.loads(fine.stdout)["baseline"]["regressed"]
        regressed = runner.invoke(cli, ["loadtest", "--signature", "classify_intent", "--queries", "20",
                                        "--target", url, "--baseline", str(tmp_path / "fast.json"), "--json"])
        assert regressed.exit_code == 1
        assert json.loads(regressed.stdout)["baseline"]["regressed"]
        missing = runner.invoke(cli, ["loadtest", "--signature", "classify_intent", "--target", url,
                                      "--baseline", str(tmp_path / "nope.json")])
        assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_systemd_hears_ready_once_warm(server, tmp_path, monkeypatch) -> None:
    """A Type=notify unit: the server sends READY=1 on $NOTIFY_SOCKET when warm-up is done."""
    import socket

    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(20)
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        with server() as (url, _):
            assert listener.recv(64) == b"READY=1"
            assert httpx.get(f"{url}/ready").status_code == 200


def test_a_missing_version_answers_json_503_and_ready_names_it(server, tmp_path) -> None:
    import shutil

    from ratchet.evaluation import fewshot_program
    from ratchet.programs.production import ProductionPointers
    from ratchet.programs.versions import VersionStore

    with server() as (url, runtime):
        spec = runtime.registry.get("classify_intent")
        versions = VersionStore(runtime.settings.home_dir)
        versions.save(spec, fewshot_program(spec, 2), lm="m", adapter="a")
        ProductionPointers(runtime.db, versions).set("classify_intent", "v1", actor="t", reason="t")
        shutil.rmtree(runtime.settings.home_dir / "programs" / "classify_intent" / "v1")
        runtime.follower.refresh()
        response = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": "x"}})
        assert response.status_code == 503 and response.headers["content-type"] == "application/json"
        assert response.json()["error"] == "version_unavailable" and "Traceback" not in response.text
        ready = _wait_ready(url)
        assert ready.status_code == 503 and not ready.json()["checks"]["versions"]["ok"]
        assert ready.json()["checks"]["versions"]["unavailable"][0]["version"] == "v1"
        other = httpx.post(f"{url}/v1/programs/extract_booking/predict", json={"inputs": {"text": "x"}})
        assert other.status_code in (200, 502)  # the other programs still serve
