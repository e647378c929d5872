"""Shared fixtures: an isolated working directory and environment, scripted LMs."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import dspy
import pytest

from ratchet.lm.engines import ScriptedEngine, ThreadedAsyncEngine


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own directory with no RATCHET_* variables and DSPy's disk cache off."""
    for key in list(os.environ):
        if key.startswith("RATCHET_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    yield


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> Callable[[], int]:
    """A function returning a free TCP port on 127.0.0.1."""
    return _free_port


@pytest.fixture
def scripted_lm() -> Callable[..., tuple[dspy.LM, ScriptedEngine]]:
    """Build a ``dspy.LM`` whose engine answers from a script (no model, no network)."""

    def make(responder, **kwargs) -> tuple[dspy.LM, ScriptedEngine]:
        engine = ScriptedEngine(responder, **kwargs)
        lm = dspy.LM("scripted/test", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=False,
                     num_retries=0)
        return lm, engine

    return make


# DSPy fetches LiteLLM's model price map from GitHub on first use; tests run offline.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")
