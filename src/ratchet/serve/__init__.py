"""Serving: the instrumented runtime, routing by experiment, metrics and the HTTP API."""

from ratchet.serve.instrument import InstrumentedModule, instrument
from ratchet.serve.result import CallResult, FeedbackResult
from ratchet.serve.runtime import Runtime

__all__ = ["CallResult", "FeedbackResult", "InstrumentedModule", "Runtime", "instrument"]
