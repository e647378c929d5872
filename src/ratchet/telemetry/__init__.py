"""Telemetry of live calls: PII redaction before anything is buffered or written.

Also: deterministic sampling (``Sampler``), the log records (``InteractionLog``,
``FeedbackRecord``) and the buffered, rotating writer (``TelemetryWriter``).
"""

from ratchet.telemetry.records import FeedbackRecord, InteractionLog, parse_record
from ratchet.telemetry.redact import Redactor
from ratchet.telemetry.sampling import Sampler
from ratchet.telemetry.writer import TelemetryWriter, iter_log_files

__all__ = [
    "FeedbackRecord",
    "InteractionLog",
    "Redactor",
    "Sampler",
    "TelemetryWriter",
    "iter_log_files",
    "parse_record",
]
