"""OTLP export of served requests with OpenTelemetry's SDK: the tracer, the exporter, W3C trace context.

Imported only when ``[otel] enabled`` (:func:`ratchet.serve.tracing.request_tracer`). Ratchet builds its own
``TracerProvider`` and leaves OpenTelemetry's global one alone, so an application that already exports its own
traces keeps doing so unchanged; the span context is OpenTelemetry's, so a span the application has open when it
calls Ratchet becomes the parent, and instrumentation inside the program (LiteLLM's, OpenInference's) nests under
Ratchet's span. Spans leave through a ``BatchSpanProcessor`` on its own thread: a request never waits for the
receiver, a receiver that is down costs dropped spans (the SDK logs them), never a failed request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

from opentelemetry import context, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode, format_span_id, format_trace_id
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ratchet.config import OtelSettings
from ratchet.errors import ConfigError
from ratchet.serve.result import CallResult
from ratchet.serve.tracing import content_attributes, end_attributes, outcome, span_name, start_attributes
from ratchet.telemetry.redact import Redactor
from ratchet.version import __version__

__all__ = ["TRACE_HEADERS", "RequestSpan", "RequestTracer", "parse_headers", "traces_url"]

log = logging.getLogger(__name__)

TRACE_HEADERS = ("traceparent", "tracestate")
"""The W3C Trace Context headers read from an incoming request."""

_TRACES_PATH = "/v1/traces"


def traces_url(endpoint: str) -> str:
    """The OTLP/HTTP traces URL of an endpoint: ``http://collector:4318`` → ``http://collector:4318/v1/traces``;
    a URL already ending in ``/v1/traces`` is kept (Phoenix's ``…:6006/v1/traces``, Langfuse's
    ``…/api/public/otel/v1/traces``), so a base URL and a full one both work."""
    path = urlsplit(endpoint).path.rstrip("/")
    return endpoint if path.endswith(_TRACES_PATH) else endpoint.rstrip("/") + _TRACES_PATH


def parse_headers(text: str) -> dict[str, str]:
    """``"Authorization=Basic%20abc,x-team=ml"`` → headers (values percent-decoded, as ``OTEL_EXPORTER_OTLP_HEADERS``;
    names lower-cased, as gRPC metadata needs). The settings validated the form; the values are never logged."""
    headers: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if sep and name.strip():
            headers[unquote(name).strip().lower()] = unquote(value).strip()
    return headers


def _exporter(settings: OtelSettings) -> SpanExporter:
    headers = parse_headers(settings.headers.get_secret_value()) if settings.headers is not None else None
    if settings.protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            raise ConfigError("otel.protocol = 'grpc' needs OpenTelemetry's gRPC exporter: pip install "
                              "'ratchet[otel-grpc]' (or use protocol = 'http/protobuf')") from None
        return GrpcExporter(endpoint=settings.endpoint, headers=headers)  # http://… → plaintext, https://… → TLS
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter

    return HttpExporter(endpoint=traces_url(settings.endpoint) if settings.endpoint else None, headers=headers)


class RequestTracer:
    """Opens the span of each served request and exports it (``processor``: tests pass an in-memory one)."""

    def __init__(self, settings: OtelSettings, redactor: Redactor, *, processor: SpanProcessor | None = None
                 ) -> None:
        self.include_content = settings.include_content
        self.max_content_chars = settings.max_content_chars
        self.redactor = redactor
        resource = Resource.create({"service.name": settings.service_name, "service.version": __version__})
        sampler = ParentBased(TraceIdRatioBased(settings.sampling_rate))  # a caller's sampled flag decides its trace
        self.provider = TracerProvider(resource=resource, sampler=sampler)
        self.provider.add_span_processor(processor or BatchSpanProcessor(_exporter(settings)))
        self.tracer = self.provider.get_tracer("ratchet", __version__)
        self.propagator = TraceContextTextMapPropagator()
        self._closed = False

    @contextmanager
    def request(self, signature: str, lm: Any, carrier: Mapping[str, str] | None = None) -> Iterator[RequestSpan]:
        """The span of one request to ``signature`` on the task model ``lm``, current while the block runs: the
        child of ``carrier``'s ``traceparent`` when it holds a valid one, else of the span current here (none: a
        new trace)."""
        parent = self.propagator.extract(carrier) if carrier else None
        attributes = start_attributes(signature, lm.model, getattr(lm, "kwargs", None))
        span = self.tracer.start_span(span_name(signature), context=parent, kind=SpanKind.INTERNAL,
                                      attributes=attributes)
        token = context.attach(trace.set_span_in_context(span, parent))
        try:
            yield RequestSpan(self, span)
        except BaseException as exc:  # the call raised (an unknown signature): the span says so, without its text
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise
        finally:
            context.detach(token)
            span.end()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Export the spans queued so far; False when they did not all leave within ``timeout_s``."""
        return self.provider.force_flush(int(timeout_s * 1000))

    def close(self) -> None:
        """Export what is queued, then stop (idempotent)."""
        if not self._closed:
            self._closed = True
            self.provider.shutdown()


class RequestSpan:
    """The open span of one request; :meth:`finish` records what the call did."""

    def __init__(self, tracer: RequestTracer, span: trace.Span) -> None:
        self._tracer = tracer
        self.span = span

    def finish(self, result: CallResult, inputs: Any) -> CallResult:
        """Record ``result`` on the span (content only when enabled, redacted) and give it the trace's ids."""
        span = self.span
        if not span.is_recording():  # not sampled: nothing is exported, nothing to build
            return result
        try:
            span.set_attributes(end_attributes(result))
            if self._tracer.include_content:
                span.set_attributes(content_attributes(inputs, result.outputs, self._tracer.redactor,
                                                       self._tracer.max_content_chars))
            if outcome(result) == "error":
                span.set_status(Status(StatusCode.ERROR, result.error_type or "error"))
            ids = span.get_span_context()
            result.trace_id, result.span_id = format_trace_id(ids.trace_id), format_span_id(ids.span_id)
        except Exception:  # a span must never fail a request
            log.warning("request %s: could not record its span", result.request_id, exc_info=True)
        return result
