"""Ratchet: DSPy programs in production that improve continuously and safely.

The public API::

    import ratchet

    @ratchet.program("classify_intent", metric=exact_match)
    def classify_intent() -> dspy.Module: ...

    @ratchet.git_mapper("classify_commit")         # how `ratchet collect git` turns a commit into an example
    def conventional_commit(commit) -> dict | None: ...

    with ratchet.Runtime() as runtime:             # routing, metrics, counters, telemetry
        result = runtime.call("classify_intent", {"text": "Where is my card?"}, user_id="u-42")
        runtime.feedback(result.request_id, score=1.0)
"""

import os as _os

# LiteLLM (under DSPy) downloads its model price map from GitHub on first use, retrying for seconds
# where there is no network (servers behind a firewall, CI). Its bundled copy gives the same prices
# reproducibly; set LITELLM_LOCAL_MODEL_COST_MAP=false to fetch the live one.
_os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "true")

from ratchet.config import Settings, load_settings
from ratchet.data.collect.mappers import git_mapper
from ratchet.errors import (
    ConfigError,
    DataError,
    DuplicateProgramError,
    InputValidationError,
    InvalidProgramError,
    ModelError,
    ModelNotAvailableError,
    OutputParseError,
    RatchetError,
    RegistryError,
    UnknownProgramError,
)
from ratchet.lm import CompletionAdapter, build_lms, configure_dspy
from ratchet.programs import REGISTRY, ProgramSpec, load_programs, program
from ratchet.version import __version__

_SERVING = {"CallResult", "Runtime", "instrument"}


def __getattr__(name: str) -> object:
    # The serving runtime pulls in SQLAlchemy, Prometheus and the telemetry writer: load it on first use,
    # so `import ratchet` in a programs module stays light.
    if name in _SERVING:
        from ratchet import serve

        return getattr(serve, name)
    raise AttributeError(f"module 'ratchet' has no attribute {name!r}")

__all__ = [
    "REGISTRY",
    "CallResult",
    "CompletionAdapter",
    "ConfigError",
    "DataError",
    "DuplicateProgramError",
    "InputValidationError",
    "InvalidProgramError",
    "ModelError",
    "ModelNotAvailableError",
    "OutputParseError",
    "ProgramSpec",
    "RatchetError",
    "RegistryError",
    "Runtime",
    "Settings",
    "UnknownProgramError",
    "__version__",
    "build_lms",
    "configure_dspy",
    "git_mapper",
    "instrument",
    "load_programs",
    "load_settings",
    "program",
]
