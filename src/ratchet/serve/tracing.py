"""What the OpenTelemetry span of one served request says: GenAI semantic conventions plus Ratchet's attributes.

Every request through the runtime (HTTP predict, ``Runtime.call``/``acall``, ``ratchet.instrument``) is one span
``invoke_agent <signature>`` of kind INTERNAL: to the GenAI conventions a DSPy program is an in-process agent,
its signature the agent's name and the program version its version. The span joins the caller's trace (a W3C
``traceparent`` sent with the request, or the span current in the caller's code) and covers the whole call:
queueing for a slot, the program with every LM call it makes, and the fallback model.

=================================  ==================================================================================
attribute                          value
=================================  ==================================================================================
``gen_ai.operation.name``          ``invoke_agent``
``gen_ai.provider.name``           from the model string: ``openai``, ``anthropic``, ``aws.bedrock``, …, ``llama.cpp``
``gen_ai.system``                  the same value (the name conventions before 1.37 and some backends read)
``gen_ai.agent.name`` / version    the signature / the program version that answered
``gen_ai.request.model``           the task model; ``gen_ai.response.model`` the model that answered (fallback)
``gen_ai.request.temperature``,    the task model's, when it sets them
``gen_ai.request.max_tokens``
``gen_ai.usage.input_tokens`` /    tokens of every LM call the program made
``output_tokens``
``error.type``                     Ratchet's error type (``timeout``, ``lm_error``, ``invalid_request``, …), on failure
``ratchet.program`` / ``.version`` the signature / the version; ``ratchet.arm``: ``baseline`` or ``candidate``
``ratchet.request_id``             the id the response carries (feedback names it)
``ratchet.outcome``                ``success``, ``error`` (the arm's failure) or ``refused`` (before the program ran)
``ratchet.latency_ms``,            as the response reports them
``ratchet.cost_usd``,
``ratchet.fallback_used``,
``ratchet.telemetry_sampled``
=================================  ==================================================================================

The span's status is ERROR for the arm's failures only; a refusal (the client's error, or no free call slot) sets
``error.type`` and leaves the status unset, as HTTP servers do for 4xx answers. Exception text and tracebacks are
never exported (the log has them, under the request id).

Inputs and outputs are exported only with ``[otel] include_content = true``, and only after the same PII
redaction telemetry applies (:class:`~ratchet.telemetry.redact.Redactor`): as ``gen_ai.input.messages`` /
``gen_ai.output.messages`` (the conventions' JSON message form) and as ``input.value`` / ``output.value``
(OpenInference, which Phoenix, Arize and Langfuse show as the span's input and output), each value cut to
``max_content_chars``. User ids are never exported, not even as pseudonyms.

Nothing here imports OpenTelemetry: :func:`request_tracer` imports :mod:`ratchet.serve.otel` (the SDK and the
exporter) only when ``[otel] enabled``, so a server without it pays nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ratchet.config import OtelSettings
from ratchet.serve.errors import REFUSALS
from ratchet.serve.result import CallResult
from ratchet.telemetry.redact import Redactor

if TYPE_CHECKING:
    from ratchet.serve.otel import RequestTracer

__all__ = ["OPERATION", "content_attributes", "end_attributes", "outcome", "provider_name", "request_tracer",
           "span_name", "start_attributes"]

OPERATION = "invoke_agent"

# LiteLLM's provider prefix → the GenAI conventions' well-known gen_ai.provider.name; others keep their prefix.
_PROVIDERS = {
    "openai": "openai", "text-completion-openai": "openai", "anthropic": "anthropic",
    "azure": "azure.ai.openai", "azure_ai": "azure.ai.inference", "bedrock": "aws.bedrock",
    "bedrock_converse": "aws.bedrock", "sagemaker": "aws.sagemaker", "gemini": "gcp.gemini",
    "vertex_ai": "gcp.vertex_ai", "vertex_ai_beta": "gcp.vertex_ai", "cohere": "cohere", "cohere_chat": "cohere",
    "mistral": "mistral_ai", "groq": "groq", "deepseek": "deepseek", "perplexity": "perplexity", "xai": "x_ai",
    "watsonx": "ibm.watsonx.ai", "llamacpp": "llama.cpp", "ollama": "ollama", "ollama_chat": "ollama",
}


def provider_name(model: str) -> str:
    """``gen_ai.provider.name`` of a model string: ``anthropic/claude-…`` → ``anthropic``, the embedded model
    (``llamacpp/…``) → ``llama.cpp``; a model string without a provider → ``_OTHER``."""
    prefix, slash, _ = model.partition("/")
    if not slash or not prefix:
        return "_OTHER"
    return _PROVIDERS.get(prefix.lower(), prefix.lower())


def span_name(signature: str) -> str:
    return f"{OPERATION} {signature}"


def start_attributes(signature: str, model: str, lm_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What is known when the request arrives (the conventions want these at span creation, for samplers)."""
    provider = provider_name(model)
    attributes: dict[str, Any] = {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": provider,
        "gen_ai.system": provider,
        "gen_ai.agent.name": signature,
        "gen_ai.request.model": model,
        "ratchet.program": signature,
    }
    for key, name in (("temperature", "gen_ai.request.temperature"), ("max_tokens", "gen_ai.request.max_tokens")):
        value = (lm_kwargs or {}).get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return attributes


def outcome(result: CallResult) -> str:
    """``success``, ``refused`` (refused before the program ran: never the arm's failure) or ``error``."""
    if result.success:
        return "success"
    return "refused" if result.error_type in REFUSALS else "error"


def end_attributes(result: CallResult) -> dict[str, Any]:
    """What the finished call adds: the version and arm that answered, usage, latency, outcome."""
    attributes: dict[str, Any] = {
        "gen_ai.agent.version": result.version,
        "gen_ai.usage.input_tokens": result.tokens_in,
        "gen_ai.usage.output_tokens": result.tokens_out,
        "ratchet.version": result.version,
        "ratchet.arm": result.arm,
        "ratchet.request_id": result.request_id,
        "ratchet.outcome": outcome(result),
        "ratchet.latency_ms": round(result.latency_ms, 3),
        "ratchet.fallback_used": result.fallback_used,
        "ratchet.telemetry_sampled": result.sampled,
    }
    if result.model:
        attributes["gen_ai.response.model"] = result.model
    if result.cost_usd is not None:
        attributes["ratchet.cost_usd"] = result.cost_usd
    if not result.success:
        attributes["error.type"] = result.error_type or "_OTHER"
    return attributes


def content_attributes(inputs: Any, outputs: Mapping[str, Any] | None, redactor: Redactor, max_chars: int
                       ) -> dict[str, str]:
    """Inputs and outputs, PII-redacted and each value cut to ``max_chars``, as GenAI messages and OpenInference
    values (JSON strings: OTLP attributes hold no nested maps). Redacted whole, then cut."""
    attributes: dict[str, str] = {}
    for side, role, values in (("input", "user", inputs), ("output", "assistant", outputs)):
        if values is None:
            continue
        plain = json.loads(json.dumps(values, ensure_ascii=False, default=str))  # objects as the text redaction sees
        redacted, _ = redactor.redact(plain)
        text = json.dumps(_cut(redacted, max_chars), ensure_ascii=False, default=str)  # cut after: no half e-mails
        message: dict[str, Any] = {"role": role, "parts": [{"type": "text", "content": text}]}
        if side == "output":
            message["finish_reason"] = "stop"
        attributes[f"gen_ai.{side}.messages"] = json.dumps([message], ensure_ascii=False)
        attributes[f"{side}.value"] = text
        attributes[f"{side}.mime_type"] = "application/json"
    return attributes


def _cut(value: Any, max_chars: int) -> Any:
    """JSON data with every string longer than ``max_chars`` cut (and marked with "…")."""
    if isinstance(value, dict):
        return {key: _cut(item, max_chars) for key, item in value.items()}
    if isinstance(value, list):
        return [_cut(item, max_chars) for item in value]
    return value[:max_chars] + "…" if isinstance(value, str) and len(value) > max_chars else value


def request_tracer(settings: OtelSettings, redactor: Redactor) -> RequestTracer | None:
    """The span exporter ``[otel]`` asks for, or None when it is off (then OpenTelemetry's SDK is never imported)."""
    if not settings.enabled:
        return None
    from ratchet.serve.otel import RequestTracer

    return RequestTracer(settings, redactor)
