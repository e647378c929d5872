"""The program registry: signature names → DSPy module factories, metrics and schemas."""

from ratchet.programs.loading import import_program_source, load_programs
from ratchet.programs.registry import REGISTRY, Metric, ProgramRegistry, ProgramSpec, program
from ratchet.programs.schema import FieldSpec, ProgramSchema

__all__ = [
    "REGISTRY",
    "FieldSpec",
    "Metric",
    "ProgramRegistry",
    "ProgramSchema",
    "ProgramSpec",
    "import_program_source",
    "load_programs",
    "program",
]
