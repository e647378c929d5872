"""Saved KV caches of prompt prefixes, so every program and arm served keeps its prompt cached.

A llama.cpp context caches one prompt: the next call reuses the part of it that its own prompt
shares. Several programs, or the two arms of an A/B split, served from the same few contexts
would evict each other's long few-shot prefix and recompute it (seconds on a CPU). This module
keeps a copy of a context's state (``llama_state_get_data``: the KV cells of the tokens it
holds) for each prompt family, within a byte budget, and writes it back into whichever context
serves the next call of that family (``llama_state_set_data``: a copy, milliseconds, instead of
re-evaluating the prompt).

The whole context's state, not one sequence's: llama.cpp leaves out of a *sequence* state the
cells a sliding-window (SWA) layer no longer attends to from the last position. Gemma 3's SWA
layers (window 512) then lack the cells before ``last - 512``, so a restored prefix can only be
extended, never reused up to an earlier token: a call reusing it up to where its question starts
would attend to nothing there and score garbage (9 nats off in ``benchmarks``' differential
check). :func:`reusable_prefix` guards every reuse against such a state anyway.

Two prompts are of the same *family* when their common prefix covers half of each: the
requests of one program version share instructions and demos and differ in the question; a
zero-shot and a few-shot version of a program share only the instructions and are not. A
snapshot *serves* a prompt of its family unless the prompt nests it (:func:`serves`): a 96-demo
snapshot serves a prompt of its first 48 demos (restored and cut back), but a 48-demo snapshot does
not serve the 96-demo prompt and never replaces its snapshot.
"""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["PromptCache", "Snapshot", "common_length", "drop_unusable_prefix", "holds_from_start", "restore_snapshot",
           "reusable_prefix", "same_family", "serves", "shared_prefix", "take_snapshot"]

MIN_SNAPSHOT_TOKENS = 64  # a shorter prompt is cheaper to re-evaluate than to keep
MIN_RESTORE_CHARS = 1024  # a nesting snapshot sharing less with a prompt (~250 tokens) is not worth a whole restore


def shared_prefix(a: str, b: str) -> int:
    """Length of the common prefix of two strings (binary search on slices compared in C)."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def same_family(shared: int, a: str, b: str) -> bool:
    """Whether a common prefix of ``shared`` characters makes ``a`` and ``b`` one prompt family (half of each)."""
    return 2 * shared >= max(len(a), len(b))


def serves(held: str, prompt: str) -> bool:
    """Whether a cache of ``held`` serves ``prompt``'s calls as well as a cache of ``prompt`` itself would: one
    family, and ``prompt`` goes on past their common prefix by no more than ``held`` does (or a quarter of
    ``prompt``: a longer question). A prompt that nests ``held`` (its demos and then more) is not served."""
    shared = shared_prefix(held, prompt)
    if not same_family(shared, held, prompt):
        return False
    return len(prompt) - shared <= max(len(held) - shared, len(prompt) // 4)


@dataclass(frozen=True)
class Snapshot:
    """The state of one context holding ``tokens`` (the tokens of ``prompt``), as llama.cpp serialises it."""

    prompt: str
    tokens: np.ndarray
    state: Any  # a ctypes uint8 array (never copied again after the save)
    size: int

    @property
    def nbytes(self) -> int:
        return self.size + self.tokens.nbytes + len(self.prompt)


class PromptCache:
    """Snapshots by prompt family, at most ``budget_bytes`` in all; the least recently used go first.

    ``budget_bytes=None`` sizes the budget from the first snapshot: room for ``auto_tokens`` tokens
    of KV cache (the engine passes two full contexts' worth). Thread-safe; snapshots are immutable,
    so several contexts may restore the same one at once.
    """

    def __init__(self, budget_bytes: int | None, *, auto_tokens: int) -> None:
        self.budget_bytes = budget_bytes
        self.auto_tokens = auto_tokens
        self._items: OrderedDict[int, Snapshot] = OrderedDict()
        self._next = 0
        self._lock = threading.Lock()
        self.bytes = 0
        self.extra_tokens = 0  # room reserved for a while (:meth:`reserve`), on top of the budget
        self._per_token: float | None = None  # bytes a token of KV cache takes (learnt from the first snapshot)
        self.saves = 0
        self.restores = 0
        self.dropped = 0

    def find(self, prompt: str) -> tuple[Snapshot | None, int]:
        """The snapshot sharing the longest prefix with ``prompt`` (and that length), or (None, 0): one of its
        family, or one nesting it (a longer prompt holding half of it, at least :data:`MIN_RESTORE_CHARS`), which
        is restored and cut back to the shared prefix in milliseconds."""
        with self._lock:
            best, best_shared, best_key = None, 0, None
            for key, snapshot in self._items.items():
                shared = shared_prefix(snapshot.prompt, prompt)
                if shared > best_shared and (same_family(shared, snapshot.prompt, prompt)
                                             or (2 * shared >= len(prompt) and shared >= MIN_RESTORE_CHARS)):
                    best, best_shared, best_key = snapshot, shared, key
            if best_key is not None:
                self._items.move_to_end(best_key)
            return best, best_shared

    def holds(self, prompt: str) -> bool:
        """Whether a kept snapshot serves ``prompt`` (:func:`serves`; without marking it used)."""
        with self._lock:
            return any(serves(s.prompt, prompt) for s in self._items.values())

    def note_restore(self) -> None:
        with self._lock:
            self.restores += 1

    @contextmanager
    def reserve(self, tokens: int) -> Iterator[None]:
        """Hold ``tokens`` more prompt tokens than the budget while the block runs (many prompts used in turns,
        such as the candidates of a demo search); afterwards the least recently used go until it fits again."""
        with self._lock:
            self.extra_tokens += max(0, tokens)
        try:
            yield
        finally:
            with self._lock:
                self.extra_tokens -= max(0, tokens)
                self._shrink_to(self._limit())

    def _limit(self) -> int:
        """The bytes snapshots may take now: the budget plus any room reserved (0 before the first snapshot)."""
        if self._per_token is None:
            return self.budget_bytes or 0
        return int((self.budget_bytes or 0) + self.extra_tokens * self._per_token)

    def _shrink_to(self, limit: int) -> None:
        while self._items and self.bytes > limit:
            self._remove(next(iter(self._items)))
            self.dropped += 1

    def put(self, snapshot: Snapshot) -> bool:
        """Keep ``snapshot`` (replacing the ones it serves: its family's older one), dropping the least recently used
        over budget."""
        with self._lock:
            if self._per_token is None:
                self._per_token = snapshot.size / max(1, len(snapshot.tokens))
            if self.budget_bytes is None:
                self.budget_bytes = int(self._per_token * self.auto_tokens)
            limit = self._limit()
            if snapshot.nbytes > limit:
                return False
            for key, held in list(self._items.items()):
                if serves(snapshot.prompt, held.prompt):
                    self._remove(key)
            self._shrink_to(limit - snapshot.nbytes)
            self._next += 1
            self._items[self._next] = snapshot
            self.bytes += snapshot.nbytes
            self.saves += 1
            return True

    def _remove(self, key: int) -> None:
        self.bytes -= self._items.pop(key).nbytes

    def __len__(self) -> int:
        return len(self._items)

    def stats(self) -> dict[str, int | None]:
        """Snapshots held, their bytes, the budget, and the saves, restores and drops so far."""
        return {"snapshots": len(self._items), "bytes": self.bytes, "budget_bytes": self.budget_bytes,
                "saves": self.saves, "restores": self.restores, "dropped": self.dropped}


def common_length(cached: np.ndarray, tokens: Sequence[int]) -> int:
    """How many leading tokens ``cached`` and ``tokens`` share."""
    n = min(len(cached), len(tokens))
    if n == 0:
        return 0
    differs = np.flatnonzero(cached[:n] != np.asarray(tokens[:n], dtype=cached.dtype))
    return int(differs[0]) if len(differs) else n


def take_snapshot(llama: Any, prompt: str) -> Snapshot | None:
    """The KV cache of ``llama``'s context trimmed to ``prompt``'s tokens (what a completion left after them goes).

    None when the context holds fewer than :data:`MIN_SNAPSHOT_TOKENS` of them. ``llama`` must be checked out.
    """
    import llama_cpp

    tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    keep = common_length(llama.input_ids[: llama.n_tokens], tokens)
    if keep < MIN_SNAPSHOT_TOKENS:
        return None
    if keep < llama.n_tokens:
        if not llama._ctx.kv_cache_seq_rm(-1, keep, -1):
            return None
        llama.n_tokens = keep
        llama._requires_eval = True
    size = llama_cpp.llama_state_get_size(llama.ctx)
    state = (ctypes.c_uint8 * size)()
    written = llama_cpp.llama_state_get_data(llama.ctx, state, size)
    if not written or written > size:
        return None
    return Snapshot(prompt=prompt, tokens=np.array(llama.input_ids[:keep], copy=True), state=state, size=written)


def restore_snapshot(llama: Any, snapshot: Snapshot) -> bool:
    """Write ``snapshot`` into ``llama``'s context, replacing what it holds (False, and an empty context, if not)."""
    import llama_cpp

    if llama_cpp.llama_state_set_data(llama.ctx, snapshot.state, snapshot.size) == 0:
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        llama.n_tokens = 0
        llama._requires_eval = True
        return False
    n = len(snapshot.tokens)
    llama.input_ids[:n] = snapshot.tokens
    llama.n_tokens = n
    llama._requires_eval = True  # the logits are not part of the snapshot: the next call decodes at least a token
    return True


def reusable_prefix(llama: Any, n_past: int) -> int:
    """``n_past`` if ``llama``'s KV cache holds what a call reusing its first ``n_past`` tokens attends to, else 0.

    A sliding-window layer attends to the ``n_swa`` positions before each new token: reusing a prefix cut
    before the end needs that layer's cells from ``n_past - n_swa`` on. A live context keeps them all
    (``swa_full``), but a state restored from a sequence snapshot may not (llama.cpp's own server makes
    the same check). Reusing all the cache (``n_past == n_tokens``) only extends it and is always fine.
    """
    import llama_cpp

    if n_past <= 0 or n_past >= llama.n_tokens:
        return max(n_past, 0)
    n_swa = llama_cpp.llama_model_n_swa(llama.model)
    if n_swa <= 0:
        return n_past
    pos_min = _earliest_position(llama)
    return n_past if 0 <= pos_min <= max(0, n_past - n_swa) else 0


def holds_from_start(llama: Any) -> bool:
    """Whether ``llama``'s KV cache holds every position from 0 on, so any prefix of it is reusable (an empty one
    holds nothing to reuse).

    A context that restored a snapshot and then went on no longer does: llama.cpp's sliding-window cache then
    writes the new tokens over the oldest cells outside the window (positions 0, 1, …), and a later call can only
    reuse the prefix from within the window's reach (:func:`reusable_prefix`).
    """
    return _earliest_position(llama) == 0


def _earliest_position(llama: Any) -> int:
    """The smallest position the KV cache holds for sequence 0 (-1 when empty; above 0 only for SWA caches)."""
    import llama_cpp

    return llama_cpp.llama_memory_seq_pos_min(llama_cpp.llama_get_memory(llama.ctx), 0)


def drop_unusable_prefix(llama: Any, prompt: str) -> None:
    """Empty ``llama``'s cache if ``create_completion(prompt)`` would reuse a prefix it cannot (see
    :func:`reusable_prefix`); llama-cpp-python reuses whatever tokens match without that check."""
    if llama.n_tokens == 0 or holds_from_start(llama):
        return
    tokens = llama.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
    shared = common_length(llama.input_ids[: llama.n_tokens], tokens)
    reuse = shared - 1 if shared == len(tokens) else shared  # as Llama.generate: the last token is re-decoded
    if reuse > 0 and reusable_prefix(llama, reuse) != reuse:
        llama._ctx.kv_cache_seq_rm(-1, 0, -1)
        llama.n_tokens = 0
