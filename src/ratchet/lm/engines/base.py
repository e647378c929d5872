"""What every Ratchet LM engine shares (DSPy 3.4 engine API: ``complete(Request) -> Response``).

An engine turns one canonical :class:`dspy.lm15.Request` into one
:class:`dspy.lm15.Response`; DSPy owns caching, retries and history.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

from dspy.lm15 import Message, Request, Response, TextPart, Usage

__all__ = ["SyncEngine", "ThreadedAsyncEngine", "flatten_request", "text_response"]


class SyncEngine(Protocol):
    def complete(self, request: Request) -> Response: ...


def _system_text(request: Request) -> str | None:
    if request.system is None:
        return None
    if isinstance(request.system, str):
        return request.system
    return "".join(getattr(part, "text", "") or "" for part in request.system)


def flatten_request(request: Request) -> str:
    """The text a completion (base) model should continue.

    A request holding one user message and no system prompt is already a
    completion prompt (that is what :class:`~ratchet.lm.adapter.CompletionAdapter`
    sends) and passes through unchanged. Anything else — a chat-format prompt —
    is flattened naively: system, then every message, separated by blank lines.
    """
    system = _system_text(request)
    if system is None and len(request.messages) == 1 and request.messages[0].role == "user":
        return request.messages[0].text or ""
    parts = [system] if system else []
    parts.extend(message.text or "" for message in request.messages)
    return "\n\n".join(parts) + "\n\n"


def text_response(text: str, *, model: str, input_tokens: int, output_tokens: int,
                  finish_reason: str = "stop", response_id: str | None = None) -> Response:
    """Wrap generated text as an assistant :class:`Response` with usage."""
    reason = finish_reason if finish_reason in ("stop", "length") else "stop"
    return Response(
        id=response_id,
        model=model,
        message=Message.assistant([TextPart(text)]),
        finish_reason=reason,
        usage=Usage(input_tokens=input_tokens, output_tokens=output_tokens,
                    total_tokens=input_tokens + output_tokens),
    )


class ThreadedAsyncEngine:
    """Async counterpart of a blocking engine: runs ``complete`` in a worker thread."""

    def __init__(self, sync: SyncEngine) -> None:
        self.sync = sync

    async def complete(self, request: Request) -> Response:
        return await asyncio.to_thread(self.sync.complete, request)

    async def aclose(self) -> None:
        close: Any = getattr(self.sync, "close", None)
        if callable(close):
            close()
