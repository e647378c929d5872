"""In-process llama.cpp engine for GGUF base models (the embedded default model)."""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dspy.lm15 import ContextLengthError, InvalidRequestError, Request, Response, ServerError

from ratchet.errors import ModelNotAvailableError
from ratchet.lm import llamacpp_native as native
from ratchet.lm.directives import read_directive
from ratchet.lm.engines.base import flatten_request, text_response
from ratchet.lm.engines.choices import score_choices
from ratchet.lm.engines.grammar import grammar_problem, greedy_grammar
from ratchet.lm.engines.prompt_cache import (
    PromptCache,
    Snapshot,
    drop_unusable_prefix,
    holds_from_start,
    restore_snapshot,
    same_family,
    serves,
    shared_prefix,
    take_snapshot,
)

if TYPE_CHECKING:
    from ratchet.lm.selftest import SelfTestResult

__all__ = ["LlamaCppEngine"]

log = logging.getLogger(__name__)

_RECENT_PROMPTS = 64  # prompts remembered (text only) to tell a recurring prompt family from a one-off


@dataclass
class _Context:
    """One llama.cpp instance and the prompt its KV cache holds."""

    llama: Any
    prompt: str = ""
    used: int = 0


@dataclass
class _Plan:
    """What a checkout does before the call: make a context, save what it holds, restore a snapshot."""

    context: _Context | None
    save: bool = False
    restore: Snapshot | None = None


class LlamaCppEngine:
    """``complete(Request) -> Response`` on a small set of ``llama_cpp.Llama`` contexts.

    A ``Llama`` object is not thread-safe, so each call checks one context out and
    returns it afterwards; at most ``pool_size`` calls compute at once (1 = serialised).
    Up to ``cache_slots`` contexts are kept (at least ``pool_size``), and a call takes the
    idle context whose KV cache holds its prompt family. Every program and A/B arm served
    keeps its prompt cached: a context switching to another family saves the KV cache it
    holds in a :class:`~ratchet.lm.engines.prompt_cache.PromptCache` (at most
    ``prompt_cache_bytes``; None = two full contexts' worth, 0 = off) and restores the new
    family's, a copy of milliseconds instead of re-evaluating a long few-shot prompt. Weights
    are memory-mapped and loaded lazily on the first call, so building the LM is cheap.

    Before the first context is created, the model's self-test (:mod:`ratchet.lm.selftest`)
    runs it once in a child process (``self_test=True``): a llama.cpp crash then becomes a
    :class:`~ratchet.errors.ModelNotAvailableError` instead of killing this process. The test
    also resolves ``extra_buffers`` (``auto``/``on``/``off``, see
    :mod:`ratchet.lm.llamacpp_native`) the way this process then uses it.
    """

    supports_response_schema = False
    supports_function_calling = False
    supports_grammar = True  # ratchet.lm.directives.grammar_directive
    supports_choices = True  # ratchet.lm.directives.choices_directive

    def __init__(self, model_path: str | Path, *, model_id: str, n_ctx: int = 4096, n_threads: int = 0,
                 n_batch: int = 512, pool_size: int = 1, cache_slots: int = 1, seed: int = 0,
                 extra_buffers: native.ExtraBuffersSetting = "auto", self_test: bool = True,
                 weights_sha256: str | None = None, prompt_cache_bytes: int | None = None) -> None:
        self.model_path = str(model_path)
        self.model_id = model_id
        self.n_ctx = n_ctx
        self.n_threads = n_threads or (os.cpu_count() or 1)
        self.n_batch = n_batch
        self.pool_size = pool_size
        self.cache_slots = max(cache_slots, pool_size)
        self.seed = seed
        self._compute = threading.BoundedSemaphore(pool_size)
        self._idle: list[_Context] = []
        self._created = 0
        self._clock = 0
        self._lock = threading.Lock()
        self.prompt_cache_bytes = prompt_cache_bytes
        self._prompts = None if prompt_cache_bytes == 0 else PromptCache(prompt_cache_bytes, auto_tokens=2 * n_ctx)
        self._recent: deque[str] = deque(maxlen=_RECENT_PROMPTS)  # a family seen twice here is worth saving
        self.cache_stats = {"reused": 0, "restored": 0, "missed": 0}
        self._grammars: set[str] = set()
        self._calibration: dict[tuple[str, tuple[str, ...]], list[float]] = {}
        self.extra_buffers_setting = extra_buffers
        self.self_test = self_test
        self.weights_sha256 = weights_sha256
        self.self_test_result: SelfTestResult | None = None
        self.extra_buffers: native.ExtraBuffers | None = None  # resolved before the first context is made
        self._prepare_lock = threading.Lock()
        self._vocab: Any = None  # a vocab-only Llama for counting tokens (no weights, no KV cache)
        self._vocab_lock = threading.Lock()

    # -- preparation --------------------------------------------------------------------------
    def prepare(self) -> native.ExtraBuffers:
        """Run the self-test (once; cached per machine) and settle extra buffer types before any load."""
        with self._prepare_lock:
            if self.extra_buffers is not None:
                return self.extra_buffers
            if self.self_test:
                from ratchet.lm.local_model import file_sha256
                from ratchet.lm.selftest import run_self_test

                result = run_self_test(self.model_path, extra_buffers=self.extra_buffers_setting,
                                       weights_sha256=self.weights_sha256 or file_sha256(Path(self.model_path)),
                                       n_threads=self.n_threads)
                self.self_test_result = result
                choice = native.ExtraBuffers(**result.extra_buffers)
            else:
                try:
                    info = native.system_info()
                except ImportError as exc:
                    raise ModelNotAvailableError(
                        "the embedded model needs llama-cpp-python (pip install llama-cpp-python)") from exc
                choice = native.resolve_extra_buffers(self.extra_buffers_setting, native.compiled_features(info),
                                                      native.cpu_info())
            log.info("embedded model: extra buffer types %s (%s)", "on" if choice.enabled else "off", choice.reason)
            self.extra_buffers = choice
            return choice

    # -- pool -------------------------------------------------------------------------------
    def _new_llama(self) -> Any:
        choice = self.prepare()
        from llama_cpp._utils import suppress_stdout_stderr

        with suppress_stdout_stderr(disable=False):  # llama.cpp prints load notes straight to fd 2
            try:
                return native.new_llama(self.model_path, extra_buffers=choice.enabled, n_ctx=self.n_ctx,
                                        n_threads=self.n_threads, n_batch=self.n_batch, seed=self.seed,
                                        verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ModelNotAvailableError(f"cannot load {self.model_path}: {exc}") from exc

    @contextmanager
    def _checkout(self, prompt: str = "") -> Iterator[Any]:
        """A context for ``prompt``, holding its prompt family's KV cache when one is kept (see :meth:`_plan`)."""
        with self._compute:
            with self._lock:
                plan = self._plan(prompt)
            if plan.context is None:
                try:
                    context = _Context(self._new_llama(), used=self._clock)
                except BaseException:
                    with self._lock:
                        self._created -= 1
                    raise
            else:
                context = plan.context
            try:
                self._load_prefix(context, plan)
                yield context.llama
                context.prompt = prompt
            except BaseException:
                context.prompt = ""
                raise
            finally:
                with self._lock:
                    self._idle.append(context)

    def _plan(self, prompt: str) -> _Plan:
        """Choose a context for ``prompt`` (under the lock).

        The idle context whose cache holds the same prompt family, sharing the longest prefix; else a new
        one while fewer than ``cache_slots`` exist; else the least recently used idle one. A context first
        saves what it holds when ``prompt`` will not serve those calls (another family, or a shorter prompt it
        nests), they recur and no snapshot of them is kept; a context taken from another family gets the
        snapshot sharing most of ``prompt``, if one is kept and shares more than the context does.
        """
        self._clock += 1
        if prompt and self._prompts is not None:
            self._recent.append(prompt)
        shared = {id(c): shared_prefix(c.prompt, prompt) for c in self._idle}
        family = [c for c in self._idle if same_family(shared[id(c)], c.prompt, prompt)]
        best = max(family, key=lambda c: shared[id(c)], default=None)
        if best is not None:
            self._idle.remove(best)
            best.used = self._clock
            self.cache_stats["reused"] += 1
            return _Plan(best, save=self._worth_saving(best.prompt, prompt))
        snapshot, snapshot_shared = self._prompts.find(prompt) if self._prompts is not None and prompt else (None, 0)
        if self._created < self.cache_slots:
            self._created += 1
            self.cache_stats["restored" if snapshot is not None else "missed"] += 1
            return _Plan(None, restore=snapshot)
        context = min(self._idle, key=lambda c: c.used)  # pool_size <= cache_slots: an idle context exists
        self._idle.remove(context)
        context.used = self._clock
        save = self._worth_saving(context.prompt, prompt)
        # a context whose sliding-window cells were overwritten cannot be cut back to a short shared prefix
        if snapshot is not None and snapshot_shared <= (shared[id(context)] if holds_from_start(context.llama) else 0):
            snapshot = None
        self.cache_stats["restored" if snapshot is not None else "missed"] += 1
        return _Plan(context, save=save, restore=snapshot)

    def _worth_saving(self, held: str, prompt: str) -> bool:
        """Whether a context holding ``held`` saves it before serving ``prompt``: ``prompt`` will not serve ``held``'s
        calls (another family, or a shorter prompt ``held`` nests), ``held`` recurs and no kept snapshot serves it."""
        return (self._prompts is not None and bool(held) and not serves(prompt, held) and self._recurs(held)
                and not self._prompts.holds(held))

    def _recurs(self, prompt: str) -> bool:
        """Whether another recent call had ``prompt``'s family: a prompt of its own (a long unique input) is
        not saved, which would cost a copy and a snapshot's memory for nothing."""
        return sum(same_family(shared_prefix(p, prompt), p, prompt) for p in self._recent) >= 2

    def _load_prefix(self, context: _Context, plan: _Plan) -> None:
        """Carry out ``plan`` on the checked-out ``context``: save what it holds, then restore the snapshot."""
        if self._prompts is None:
            return
        if plan.save and context.prompt:
            try:
                snapshot = take_snapshot(context.llama, context.prompt)
            except (RuntimeError, ValueError) as exc:  # not worth failing the call for: the prompt is recomputed
                log.warning("could not save a prompt's KV cache: %s", exc)
                snapshot = None
            if snapshot is not None:
                self._prompts.put(snapshot)
        if plan.restore is not None:
            context.prompt = ""  # what it holds is being replaced
            if restore_snapshot(context.llama, plan.restore):
                context.prompt = plan.restore.prompt
                self._prompts.note_restore()

    @contextmanager
    def room_for_prompts(self, tokens: int) -> Iterator[None]:
        """Let the prompt cache keep ``tokens`` more prompt tokens while the block runs (at most two more
        contexts' worth), so prompts used in turns — the candidates of a demo search — are restored instead of
        re-read each turn; then it shrinks back to its budget. Nothing when the prompt cache is off."""
        if self._prompts is None:
            yield
            return
        with self._prompts.reserve(min(tokens, 2 * self.n_ctx)):
            yield

    def warm_up(self) -> None:
        """Load the weights now instead of on the first request."""
        with self._checkout():
            pass

    @property
    def loaded(self) -> bool:
        return self._created > 0

    # -- tokens -------------------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        """Tokens of ``text`` as a completion prompt (BOS and special tokens as ``create_completion`` counts them).

        Uses the model's own tokenizer from a vocabulary-only load of the GGUF file, so counting never waits for a
        context that is computing. Raises ``UnicodeEncodeError`` for text that is not valid UTF-8.
        """
        data = text.encode("utf-8")
        with self._vocab_lock:
            if self._vocab is None:
                self._vocab = self._load_vocab()
            import llama_cpp

            # No output buffer: llama_tokenize then answers minus the number of tokens (half the time of tokenize()).
            counted = llama_cpp.llama_tokenize(self._vocab._model.vocab, data, len(data), None, 0, True, True)
            return -counted if counted < 0 else counted

    def _load_vocab(self) -> Any:
        try:
            from llama_cpp import Llama
            from llama_cpp._utils import suppress_stdout_stderr
        except ImportError as exc:
            raise ModelNotAvailableError("the embedded model needs llama-cpp-python (pip install llama-cpp-python)"
                                         ) from exc
        with suppress_stdout_stderr(disable=False):
            try:
                return Llama(model_path=self.model_path, vocab_only=True, verbose=False)
            except (ValueError, RuntimeError) as exc:
                raise ModelNotAvailableError(f"cannot load the vocabulary of {self.model_path}: {exc}") from exc

    # -- engine API -------------------------------------------------------------------------
    def complete(self, request: Request) -> Response:
        config = request.config
        prompt = flatten_request(request)
        directive = read_directive(config.response_format)
        if directive is not None and directive[0] == "choices":
            return self._choose(request, prompt, directive[1])
        kwargs: dict[str, Any] = {
            "max_tokens": config.max_tokens or 256,
            "temperature": 0.0 if config.temperature is None else config.temperature,
            "stop": list(config.stop) if config.stop else None,
        }
        if config.top_p is not None:
            kwargs["top_p"] = config.top_p
        if config.seed is not None:
            kwargs["seed"] = config.seed
        grammar = None
        if directive is not None and directive[0] == "gbnf":
            grammar = self._grammar(str(directive[1].get("grammar") or ""))
            if kwargs["temperature"] > 0:  # sampling: llama-cpp-python's own grammar sampler (whole vocabulary)
                from llama_cpp import LlamaGrammar

                kwargs["grammar"], grammar = LlamaGrammar.from_string(grammar, verbose=False), None
        with self._checkout(prompt) as llama:
            if self._prompts is not None:  # a restored state: never reuse a prefix its SWA layers cannot serve
                drop_unusable_prefix(llama, prompt)
            try:
                if grammar is not None:  # greedy: check the best token only (same answer, a fraction of the time)
                    with greedy_grammar(llama, grammar):
                        raw = llama.create_completion(prompt=prompt, **kwargs)
                else:
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

    def _choose(self, request: Request, prompt: str, payload: dict[str, Any]) -> Response:
        """Answer with the most likely choice (calibrated against content-free inputs when asked)."""
        choices = [str(c) for c in payload.get("choices") or []]
        if not choices:
            raise InvalidRequestError("a choices directive needs at least one choice", provider="llamacpp")
        calibration_prompt = payload.get("calibration_prompt")
        with self._checkout(prompt) as llama:
            try:
                prompt_tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
                if len(prompt_tokens) + 8 > self.n_ctx:
                    raise ContextLengthError(f"prompt of {len(prompt_tokens)} tokens exceeds the context window "
                                             f"of {self.n_ctx}", provider="llamacpp")
                options = [llama.tokenize((" " + c).encode("utf-8"), add_bos=False, special=False) for c in choices]
                scores = score_choices(llama, prompt_tokens, options)
                if calibration_prompt:
                    key = (str(calibration_prompt), tuple(choices))
                    prior = self._calibration.get(key)
                    if prior is None:
                        tokens = llama.tokenize(str(calibration_prompt).encode("utf-8"), add_bos=True, special=True)
                        prior = score_choices(llama, tokens, options)
                        if len(self._calibration) > 512:
                            self._calibration.clear()
                        self._calibration[key] = prior
                    scores = [s - p for s, p in zip(scores, prior, strict=True)]
            except RuntimeError as exc:
                raise ServerError(f"llama.cpp failed: {exc}", provider="llamacpp") from exc
        best = max(range(len(choices)), key=scores.__getitem__)
        return text_response(" " + choices[best], model=request.model or self.model_id,
                             input_tokens=len(prompt_tokens), output_tokens=1)

    def _grammar(self, text: str) -> str:
        """``text`` once llama.cpp's parser has accepted it (checked once per text)."""
        if text not in self._grammars:
            problem = grammar_problem(text)
            if problem is not None:
                raise InvalidRequestError(f"invalid GBNF grammar: {problem}", provider="llamacpp")
            if len(self._grammars) > 256:
                self._grammars.clear()
            self._grammars.add(text)
        return text

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            self._created -= len(idle)
        with self._vocab_lock:
            vocab, self._vocab = self._vocab, None
        if vocab is not None:
            idle.append(_Context(vocab))
        for context in idle:
            close = getattr(context.llama, "close", None)
            if callable(close):
                close()

    # -- persistence (only needed when a predictor-level LM is saved) ------------------------
    def dump_state(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "model_id": self.model_id, "n_ctx": self.n_ctx,
                "n_batch": self.n_batch, "pool_size": self.pool_size, "cache_slots": self.cache_slots,
                "seed": self.seed, "extra_buffers": self.extra_buffers_setting,
                "prompt_cache_bytes": self.prompt_cache_bytes}

    @classmethod
    def load_state(cls, state: dict[str, Any]) -> LlamaCppEngine:
        return cls(state["model_path"], model_id=state["model_id"], n_ctx=state.get("n_ctx", 4096),
                   n_batch=state.get("n_batch", 512), pool_size=state.get("pool_size", 1),
                   cache_slots=state.get("cache_slots", 1), seed=state.get("seed", 0),
                   extra_buffers=state.get("extra_buffers", "auto"),
                   prompt_cache_bytes=state.get("prompt_cache_bytes"))
