"""Ratchet: DSPy programs in production that improve continuously and safely.

The public API::

    import ratchet

    @ratchet.program("classify_intent", metric=exact_match)
    def classify_intent() -> dspy.Module: ...

    settings = ratchet.load_settings()
"""

__version__ = "0.1.0"

from ratchet.config import Settings, load_settings
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

__all__ = [
    "REGISTRY",
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
    "Settings",
    "UnknownProgramError",
    "__version__",
    "build_lms",
    "configure_dspy",
    "load_programs",
    "load_settings",
    "program",
]
