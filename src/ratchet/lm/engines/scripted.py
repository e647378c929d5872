"""A scripted engine: answers from a function, for tests, benchmarks and demos without a model.

Like httpx's ``MockTransport``, it plugs in where a real engine would, so the
rest of the stack (adapters, caching, usage, callbacks) runs for real.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dspy.lm15 import Request, Response

from ratchet.lm.engines.base import flatten_request, text_response

__all__ = ["ScriptedEngine"]

Responder = Callable[[str], str]


class ScriptedEngine:
    """Answer each prompt with ``responder(prompt)``.

    ``responder`` may be a function of the flattened prompt, a mapping from a
    substring of the prompt to the reply, or an iterable of replies used in turn.
    ``latency_s`` sleeps before answering; ``error`` (an exception instance or a
    function of the prompt returning one or None) makes calls fail.
    """

    supports_response_schema = False

    def __init__(self, responder: Responder | Mapping[str, str] | Iterable[str], *, latency_s: float = 0.0,
                 error: BaseException | Callable[[str], BaseException | None] | None = None,
                 tokens_per_char: float = 0.25) -> None:
        self._respond = _as_responder(responder)
        self.latency_s = latency_s
        self.error = error
        self.tokens_per_char = tokens_per_char
        self.calls = 0
        self.prompts: list[str] = []
        self._lock = threading.Lock()

    def complete(self, request: Request) -> Response:
        prompt = flatten_request(request)
        with self._lock:
            self.calls += 1
            if len(self.prompts) < 1000:
                self.prompts.append(prompt)
        if self.latency_s:
            time.sleep(self.latency_s)
        error = self.error(prompt) if callable(self.error) else self.error
        if error is not None:
            raise error
        text = self._respond(prompt)
        return text_response(text, model=request.model, input_tokens=int(len(prompt) * self.tokens_per_char),
                             output_tokens=max(1, int(len(text) * self.tokens_per_char)))

    def close(self) -> None:
        pass


def _as_responder(responder: Any) -> Responder:
    if callable(responder):
        return responder
    if isinstance(responder, Mapping):
        table = dict(responder)

        def by_substring(prompt: str) -> str:
            # The last input in the prompt is the one being answered; match from the end.
            tail = prompt[-2000:]
            best = max((k for k in table if k in tail), key=tail.rfind, default=None)
            return table[best] if best is not None else ""

        return by_substring
    replies = iter(list(responder))
    lock = threading.Lock()

    def in_turn(_prompt: str) -> str:
        with lock:
            return next(replies, "")

    return in_turn
