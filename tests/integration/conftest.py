"""Integration fixtures: the real embedded model, loaded once per session."""

from __future__ import annotations

import pytest

from ratchet.config import Settings
from ratchet.lm import LMBundle, build_lms


@pytest.fixture(scope="session")
def embedded() -> LMBundle:
    """The configured default models: Gemma 3 270M in-process through llama.cpp."""
    bundle = build_lms(Settings().lm)
    bundle.warm_up()
    return bundle
