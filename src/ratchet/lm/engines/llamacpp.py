"""In-process llama.cpp engine for GGUF base models (the embedded default model)."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dspy.lm15 import ContextLengthError, InvalidRequestError, Request, Response, ServerError

from ratchet.errors import ModelNotAvailableError
from ratchet.lm.adapter import grammar_from_response_format
from ratchet.lm.engines.base import flatten_request, text_response

__all__ = ["LlamaCppEngine"]


class LlamaCppEngine:
    """``complete(Request) -> Response`` on a pool of ``llama_cpp.Llama`` instances.

    A ``Llama`` object is not thread-safe, so each call checks one out of the pool
    (``pool_size`` instances, each holding its own copy of the weights) and
    returns it afterwards. With ``pool_size=1`` calls are serialised. Weights are
    loaded lazily on the first call, so building the LM is cheap.
    """

    supports_response_schema = False
    supports_function_calling = False
    supports_grammar = True  # reads ratchet.lm.adapter.grammar_response_format()

    def __init__(self, model_path: str | Path, *, model_id: str, n_ctx: int = 4096, n_threads: int = 0,
                 n_batch: int = 512, pool_size: int = 1, seed: int = 0) -> None:
        self.model_path = str(model_path)
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.n_threads = n_threads or (os.cpu_count() or 1)
        self.n_batch = n_batch
        self.pool_size = pool_size
        self.seed = seed
        self._pool: queue.LifoQueue[Any] = queue.LifoQueue()
        self._created = 0
        self._create_lock = threading.Lock()
        self._grammars: dict[str, Any] = {}

    # -- pool -------------------------------------------------------------------------------
    def _new_llama(self) -> Any:
        try:
            from llama_cpp import Llama
            from llama_cpp._utils import suppress_stdout_stderr
        except ImportError as exc:
            raise ModelNotAvailableError(
                "the embedded model needs llama-cpp-python (pip install llama-cpp-python)"
            ) from exc
        with suppress_stdout_stderr(disable=False):  # llama.cpp prints load notes straight to fd 2
            return Llama(model_path=self.model_path, n_ctx=self.n_ctx, n_threads=self.n_threads,
                         n_batch=self.n_batch, seed=self.seed, verbose=False)

    @contextmanager
    def _checkout(self) -> Iterator[Any]:
        try:
            llama = self._pool.get_nowait()
        except queue.Empty:
            with self._create_lock:
                create = self._created < self.pool_size
                if create:
                    self._created += 1
            if create:
                try:
                    llama = self._new_llama()
                except BaseException:
                    with self._create_lock:
                        self._created -= 1
                    raise
            else:
                llama = self._pool.get()
        try:
            yield llama
        finally:
            self._pool.put(llama)

    def warm_up(self) -> None:
        """Load the weights now instead of on the first request."""
        with self._checkout():
            pass

    @property
    def loaded(self) -> bool:
        return self._created > 0

    # -- engine API -------------------------------------------------------------------------
    def complete(self, request: Request) -> Response:
        config = request.config
        prompt = flatten_request(request)
        kwargs: dict[str, Any] = {
            "max_tokens": config.max_tokens or 256,
            "temperature": 0.0 if config.temperature is None else config.temperature,
            "stop": list(config.stop) if config.stop else None,
        }
        if config.top_p is not None:
            kwargs["top_p"] = config.top_p
        if config.seed is not None:
            kwargs["seed"] = config.seed
        grammar = self._grammar(config.response_format)
        if grammar is not None:
            kwargs["grammar"] = grammar
        with self._checkout() as llama:
            try:
                raw = llama.create_completion(prompt=prompt, **kwargs)
            except ValueError as exc:
                message = str(exc)
                if "context window" in message or "exceed" in message:
                    raise ContextLengthError(message, provider="llamacpp") from exc
                raise InvalidRequestError(message, provider="llamacpp") from exc
            except RuntimeError as exc:
                raise ServerError(f"llama.cpp failed: {exc}", provider="llamacpp") from exc
        choice = raw["choices"][0]
        usage = raw.get("usage") or {}
        return text_response(
            choice.get("text") or "",
            model=request.model or self.model_id,
            input_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            finish_reason=choice.get("finish_reason") or "stop",
            response_id=raw.get("id"),
        )

    def _grammar(self, response_format: Any) -> Any:
        """A compiled llama.cpp grammar for a grammar ``response_format``, cached by text."""
        text = grammar_from_response_format(response_format)
        if text is None:
            return None
        compiled = self._grammars.get(text)
        if compiled is None:
            from llama_cpp import LlamaGrammar

            try:
                compiled = LlamaGrammar.from_string(text, verbose=False)
            except ValueError as exc:
                raise InvalidRequestError(f"invalid GBNF grammar: {exc}", provider="llamacpp") from exc
            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars[text] = compiled
        return compiled

    def close(self) -> None:
        while True:
            try:
                llama = self._pool.get_nowait()
            except queue.Empty:
                break
            close = getattr(llama, "close", None)
            if callable(close):
                close()

    # -- persistence (only needed when a predictor-level LM is saved) ------------------------
    def dump_state(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "model_id": self.model_id, "n_ctx": self.n_ctx,
                "n_batch": self.n_batch, "pool_size": self.pool_size, "seed": self.seed}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        return cls(state["model_path"], model_id=state["model_id"], n_ctx=state.get("n_ctx", 4096),
                   n_batch=state.get("n_batch", 512), pool_size=state.get("pool_size", 1),
                   seed=state.get("seed", 0))
