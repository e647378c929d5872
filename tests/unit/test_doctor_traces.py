"""``ratchet doctor``'s traces check: against a real local OTLP/HTTP receiver, one that refuses, and none."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar

import pytest

from ratchet.config import Settings
from ratchet.ops.doctor import check_traces


class _Receiver(BaseHTTPRequestHandler):
    status = 200
    seen: ClassVar[list[tuple[str, str | None, str | None]]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        type(self).seen.append((self.path, self.headers.get("Content-Type"), self.headers.get("authorization")))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Callable[[int], str]]:
    """Start a receiver answering ``status``; its requests are in ``receiver.seen[url]``."""
    servers: list[ThreadingHTTPServer] = []

    def start(status: int) -> str:
        handler = type("Handler", (_Receiver,), {"status": status, "seen": []})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        url = f"http://127.0.0.1:{server.server_address[1]}"
        start.seen[url] = handler.seen  # type: ignore[attr-defined]
        return url

    start.seen = {}  # type: ignore[attr-defined]

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _settings(**otel: object) -> Settings:
    return Settings(otel={"enabled": True, **otel})


def test_off_is_skipped() -> None:
    assert check_traces(Settings()).status == "skip"


def test_a_receiver_that_takes_an_empty_export_passes_with_the_headers_sent(receiver, monkeypatch) -> None:
    url = receiver(200)
    monkeypatch.setenv("RATCHET_OTEL__HEADERS", "Authorization=Bearer%20abc")
    check = check_traces(Settings(otel={"enabled": True, "endpoint": url}))
    assert check.status == "ok", check
    assert check.data["endpoint"] == f"{url}/v1/traces"
    assert receiver.seen[url] == [("/v1/traces", "application/x-protobuf", "Bearer abc")]


def test_a_refusing_receiver_fails_and_names_the_headers_setting(receiver) -> None:
    check = check_traces(_settings(endpoint=receiver(401) + "/v1/traces"))
    assert check.status == "fail" and "401" in check.detail and "RATCHET_OTEL__HEADERS" in (check.fix or "")


def test_a_wrong_path_fails_with_the_status(receiver) -> None:
    check = check_traces(_settings(endpoint=receiver(404)))
    assert check.status == "fail" and "404" in check.detail


def test_no_receiver_fails_as_unreachable(free_port, monkeypatch) -> None:
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
    check = check_traces(_settings(endpoint=f"http://127.0.0.1:{free_port()}"), timeout_s=2)
    assert check.status == "fail" and "not reachable" in check.detail


def test_the_sdk_variable_is_used_when_the_setting_is_empty(receiver, monkeypatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver(200))
    check = check_traces(_settings())
    assert check.status == "ok" and check.data["endpoint"].endswith("/v1/traces")


def test_grpc_checks_the_port(free_port) -> None:
    check = check_traces(_settings(protocol="grpc", endpoint=f"http://127.0.0.1:{free_port()}"), timeout_s=2)
    assert check.status == "fail" and ("not reachable" in check.detail or "not installed" in check.detail)
