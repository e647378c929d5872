"""Integration fixtures: the real embedded model, loaded once per session."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import httpx
import pytest

from ratchet.config import Settings
from ratchet.lm import LMBundle, build_lms


@pytest.fixture(scope="session")
def embedded() -> LMBundle:
    """The configured default models: Gemma 3 270M in-process through llama.cpp."""
    bundle = build_lms(Settings().lm)
    bundle.warm_up()
    return bundle


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(process: subprocess.Popen, url: str, log: IO[bytes], timeout_s: float, what: str) -> None:
    """Poll ``url`` until it answers 200; fail with the end of ``log`` when ``process`` exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            log.seek(0)
            pytest.fail(f"{what} did not become ready: {log.read().decode(errors='replace')[-3000:]}")
        time.sleep(0.5)


@contextmanager
def _ratchet_server(config: Path, *args: str, timeout_s: float = 120) -> Iterator[str]:
    """Run a real ``ratchet serve`` for ``config`` (plus ``args``) until ready; yield its URL, stop it after."""
    port = _free_port()
    log_path = config.parent / "server.log"
    with log_path.open("w+b") as log:
        server = subprocess.Popen([sys.executable, "-m", "ratchet", "--config", str(config), "serve",
                                   "--port", str(port), "--log-level", "warning", *args],
                                  stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_ready(server, f"{url}/ready", log, timeout_s, "server")
            yield url
        finally:
            server.terminate()
            server.wait(timeout=60)


@pytest.fixture(scope="session")
def ratchet_server():
    """``with ratchet_server(config, *args) as url``: a real ``ratchet serve`` process, ready, stopped after."""
    return _ratchet_server
