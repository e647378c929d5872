"""Grammar-constrained greedy decoding on llama.cpp that checks one token per step, not the vocabulary.

llama-cpp-python puts llama.cpp's grammar sampler in its sampler chain, which filters
every token of the vocabulary against the grammar at every step: for Gemma 3 (262,144
tokens) that costs more than the model's own forward pass. At temperature 0 only the
most likely token matters, so :class:`GreedyGrammarSampler` does what llama.cpp's own
``common_sampler`` does: take the argmax, ask the grammar about that one token, and
filter the whole vocabulary only when the grammar rejects it (a forced label, the end
of the answer). The result is the same token the full filter would pick.

:func:`greedy_grammar` installs it for one ``Llama.create_completion`` call;
:func:`grammar_problem` checks a grammar with llama.cpp's own parser (``LlamaGrammar.from_string``
does not parse: a bad grammar would only fail inside a generation).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

__all__ = ["GreedyGrammarSampler", "grammar_problem", "greedy_grammar"]

_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)], align=True)


def grammar_problem(grammar: str, root: str = "root") -> str | None:
    """None if llama.cpp parses ``grammar``, else its error message (no model needed)."""
    import llama_cpp

    if not grammar.strip():
        return "the grammar is empty"
    with _captured_stderr() as log:  # llama.cpp's parser writes its error to file descriptor 2
        handle = llama_cpp.llama_sampler_init_grammar(None, grammar.encode("utf-8"), root.encode("utf-8"))
    if handle:
        llama_cpp.llama_sampler_free(handle)
        return None
    lines = [line.strip() for line in log.getvalue().splitlines() if "error" in line]
    return "; ".join(lines) or "llama.cpp could not parse it"


_STDERR_LOCK = threading.Lock()


@contextmanager
def _captured_stderr() -> Iterator[io.StringIO]:
    """What C code and Python write to standard error meanwhile (briefly redirects file descriptor 2)."""
    text = io.StringIO()
    with _STDERR_LOCK, tempfile.TemporaryFile() as sink:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(sink.fileno(), 2)
            with contextlib.redirect_stderr(text):
                yield text
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        sink.seek(0)
        text.write(sink.read().decode("utf-8", "replace"))


class GreedyGrammarSampler:
    """Stands in for llama-cpp-python's ``LlamaSampler`` (``sample(ctx, idx)``) during one generation."""

    def __init__(self, llama: Any, grammar: str, root: str = "root") -> None:
        import llama_cpp

        self._lib = llama_cpp
        self.n_vocab = int(llama.n_vocab())
        handle = llama_cpp.llama_sampler_init_grammar(llama._model.vocab, grammar.encode("utf-8"),
                                                     root.encode("utf-8"))
        if not handle:
            raise ValueError("llama.cpp could not parse the grammar")
        self._grammar: Any = handle
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._all = np.zeros(self.n_vocab, dtype=_TOKEN_DATA)
        self._all["id"] = np.arange(self.n_vocab, dtype=np.int32)
        self.full_filters = 0  # steps where the greedy token was rejected (for measurements)
        self.steps = 0

    def sample(self, ctx: Any, idx: int) -> int:
        """The most likely token the grammar allows after the ``idx``-th output of the last decode; accepted."""
        lib = self._lib
        pointer = lib.llama_get_logits_ith(ctx.ctx, idx)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        token = int(logits.argmax())
        self._one[0].id, self._one[0].logit, self._one[0].p = token, float(logits[token]), 0.0
        self._one_array.size, self._one_array.selected = 1, -1
        lib.llama_sampler_apply(self._grammar, ctypes.byref(self._one_array))
        if not np.isfinite(self._one[0].logit):
            token = self._filtered_argmax(logits)
        lib.llama_sampler_accept(self._grammar, token)
        self.steps += 1
        return token

    def _filtered_argmax(self, logits: np.ndarray) -> int:
        lib = self._lib
        self.full_filters += 1
        data = self._all
        data["logit"] = logits
        array = lib.llama_token_data_array(data=data.ctypes.data_as(lib.llama_token_data_p), size=self.n_vocab,
                                           selected=-1, sorted=False)
        lib.llama_sampler_apply(self._grammar, ctypes.byref(array))
        # The grammar sets rejected logits to -inf in place and keeps the order (data, size unchanged).
        return int(data["id"][int(data["logit"].argmax())])

    def close(self) -> None:
        if self._grammar is not None:
            self._lib.llama_sampler_free(self._grammar)
            self._grammar = None

    def __del__(self) -> None:
        self.close()


@contextmanager
def greedy_grammar(llama: Any, grammar: str) -> Iterator[GreedyGrammarSampler]:
    """Make ``llama``'s next generations (temperature 0, no grammar argument) decode under ``grammar``.

    ``Llama.generate`` builds its sampler with ``_init_sampler``; for the duration of the block
    that returns this sampler instead. The ``Llama`` must not be shared with another thread meanwhile.
    """
    sampler = GreedyGrammarSampler(llama, grammar)
    llama._init_sampler = lambda **_: sampler
    try:
        yield sampler
    finally:
        del llama._init_sampler
        llama._sampler = None
        sampler.close()
