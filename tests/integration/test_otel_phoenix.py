"""`ratchet serve` with [otel] on exports its requests to a real OTLP receiver: Arize Phoenix, run from its package.

Phoenix (PyPI ``arize-phoenix``) is a receiver teams already use for LLM traces: it takes OTLP over HTTP and gRPC,
keeps spans in SQLite and returns them, attributes included, from its REST API, so the test reads back exactly
what arrived. ``make test`` installs it in a venv of its own (``make .venv-phoenix/.installed``); elsewhere set
RATCHET_TEST_PHOENIX to its ``phoenix`` command. Without it the tests skip, except in CI, where they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from .conftest import wait_ready

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
EMAIL = "jane.doe@example.com"


def _phoenix_command() -> str | None:
    for candidate in (os.environ.get("RATCHET_TEST_PHOENIX"), str(ROOT / ".venv-phoenix" / "bin" / "phoenix"),
                      shutil.which("phoenix")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class Phoenix:
    url: str  # the UI, the REST API and OTLP/HTTP (…/v1/traces)
    grpc: str  # OTLP/gRPC

    def spans(self, project: str) -> list[dict]:
        answer = httpx.get(f"{self.url}/v1/projects/{project}/spans", params={"limit": 1000}, timeout=10)
        if answer.status_code == 404:  # no span of the project has arrived yet
            return []
        answer.raise_for_status()
        return answer.json()["data"]

    def wait_for(self, project: str, count: int, timeout_s: float = 30) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.spans(project)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.3)


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    command = _phoenix_command()
    if command is None:
        message = "Arize Phoenix is not installed: run `make .venv-phoenix/.installed` (or set RATCHET_TEST_PHOENIX)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    workdir = tmp_path_factory.mktemp("phoenix")
    port, grpc_port = _free_port(), _free_port()
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(workdir), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_PORT": str(port), "PHOENIX_GRPC_PORT": str(grpc_port), "PHOENIX_TELEMETRY_ENABLED": "false"}
    log_path = workdir / "phoenix.log"
    with log_path.open("w+b") as log:
        server = subprocess.Popen([command, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(server, f"{url}/healthz", log, 180, "Phoenix")
            yield Phoenix(url=url, grpc=f"http://127.0.0.1:{grpc_port}")
        finally:
            server.terminate()
            server.wait(timeout=60)


def _serve_config(tmp_path: Path, otel: str) -> Path:
    config = tmp_path / "ratchet.toml"
    config.write_text(f'home = "state"\n[telemetry]\nsampling_rate = 0.0\n[otel]\nenabled = true\n{otel}')
    return config


def _traceparent() -> tuple[str, str, str]:
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    return trace_id, parent_id, f"00-{trace_id}-{parent_id}-01"


def _predict(url: str, text: str, traceparent: str) -> httpx.Response:
    answer = httpx.post(f"{url}/v1/programs/classify_intent/predict", json={"inputs": {"text": text}},
                        headers={"traceparent": traceparent}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer


def test_served_requests_arrive_as_genai_spans_in_the_callers_traces(tmp_path: Path, phoenix: Phoenix,
                                                                     ratchet_server, monkeypatch) -> None:
    project = "ratchet-http"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")  # the SDK's own knob: spans leave within 0.2 s
    config = _serve_config(tmp_path, f'endpoint = "{phoenix.url}"\nprotocol = "http/protobuf"\n')
    sent = {}
    with ratchet_server(config) as url:
        for text in ("where is my card", f"I lost my card, write to {EMAIL}", "what is the exchange rate"):
            trace_id, parent_id, traceparent = _traceparent()
            answer = _predict(url, text, traceparent)
            assert answer.headers["traceresponse"].startswith(f"00-{trace_id}-")
            span_id = answer.headers["traceresponse"].split("-")[2]
            sent[trace_id] = (parent_id, span_id, answer.json())
        spans = phoenix.wait_for(project, len(sent))
    assert len(spans) == len(sent), spans
    for span in spans:
        trace_id = span["context"]["trace_id"]
        parent_id, span_id, body = sent[trace_id]  # one span per request, each in the trace the caller sent
        assert span["parent_id"] == parent_id and span["context"]["span_id"] == span_id
        assert span["name"] == "invoke_agent classify_intent"
        attrs = span["attributes"]
        assert attrs["gen_ai.operation.name"] == "invoke_agent"
        assert attrs["gen_ai.provider.name"] == "llama.cpp"
        assert attrs["gen_ai.agent.name"] == attrs["ratchet.program"] == "classify_intent"
        assert attrs["gen_ai.request.model"] == body["model"] and attrs["gen_ai.request.model"].startswith("llamacpp/")
        assert attrs["gen_ai.usage.input_tokens"] == body["tokens"]["input"] > 0
        assert attrs["gen_ai.usage.output_tokens"] == body["tokens"]["output"]
        assert (attrs["ratchet.version"], attrs["ratchet.arm"]) == (body["version"], body["arm"])
        assert body["arm"] == "baseline"
        assert attrs["ratchet.request_id"] == body["request_id"] and attrs["ratchet.outcome"] == "success"
        assert attrs["ratchet.latency_ms"] == pytest.approx(body["latency_ms"], abs=0.01)
        # No content by default. (Phoenix fills an output.value of its own from the gen_ai.* attributes: the model.)
        assert not {"input.value", "gen_ai.input.messages", "gen_ai.output.messages"} & attrs.keys()
        assert all(str(value) not in json.dumps(span) for value in body["outputs"].values())
    assert EMAIL not in json.dumps(spans) and "lost my card" not in json.dumps(spans)


def test_content_arrives_only_redacted_over_grpc(tmp_path: Path, phoenix: Phoenix, ratchet_server,
                                                 monkeypatch) -> None:
    project = "ratchet-grpc-content"
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", f"openinference.project.name={project}")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "200")
    config = _serve_config(tmp_path, f'endpoint = "{phoenix.grpc}"\nprotocol = "grpc"\ninclude_content = true\n')
    with ratchet_server(config) as url:
        trace_id, parent_id, traceparent = _traceparent()
        body = _predict(url, f"I lost my card, write to {EMAIL}", traceparent).json()
        [span] = phoenix.wait_for(project, 1)
    assert span["context"]["trace_id"] == trace_id and span["parent_id"] == parent_id
    attrs = span["attributes"]
    assert attrs["ratchet.request_id"] == body["request_id"]
    assert json.loads(attrs["input.value"]) == {"text": "I lost my card, write to [EMAIL]"}
    assert json.loads(attrs["output.value"]) == body["outputs"]
    [message] = json.loads(attrs["gen_ai.input.messages"])
    assert "[EMAIL]" in message["parts"][0]["content"]
    assert EMAIL not in json.dumps(span)


def test_doctor_finds_phoenix_over_both_protocols(phoenix: Phoenix) -> None:
    from ratchet.config import Settings
    from ratchet.ops.doctor import check_traces

    for protocol, endpoint in (("http/protobuf", phoenix.url), ("grpc", phoenix.grpc)):
        check = check_traces(Settings(otel={"enabled": True, "protocol": protocol, "endpoint": endpoint}))
        assert check.status == "ok", (protocol, check)
