"""Pick one of a few answers by likelihood on a llama.cpp model, instead of generating one.

The choices' tokens form a trie; the prompt is evaluated once (reusing the KV cache
of the previous request's common prefix) and each branch point costs one more token,
so scoring ten labels usually costs about as much as generating one token. A choice's
score is the log-probability of its tokens up to where it differs from every other
choice; the rest of a label is implied once it is unambiguous.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from ratchet.lm.engines.prompt_cache import common_length, reusable_prefix

__all__ = ["eval_prompt", "score_choices"]


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def _last_logprobs(llama: Any) -> np.ndarray:
    import llama_cpp

    pointer = llama_cpp.llama_get_logits_ith(llama.ctx, -1)
    return _log_softmax(np.ctypeslib.as_array(pointer, shape=(llama.n_vocab(),)).astype(np.float64))


def eval_prompt(llama: Any, tokens: Sequence[int]) -> np.ndarray:
    """Evaluate ``tokens`` (reusing the cached common prefix) and return the next token's log-probabilities."""
    prefix = common_length(llama.input_ids[: llama.n_tokens], tokens[:-1])  # the last token is always re-evaluated
    llama.n_tokens = prefix = reusable_prefix(llama, prefix)
    llama.eval(list(tokens[prefix:]))
    return _last_logprobs(llama)


def score_choices(llama: Any, prompt_tokens: Sequence[int], choice_tokens: Sequence[Sequence[int]]) -> list[float]:
    """Log-probability of each choice's distinguishing tokens after ``prompt_tokens``."""
    scores = [0.0] * len(choice_tokens)
    base = len(prompt_tokens)

    def descend(indices: list[int], depth: int, logprobs: np.ndarray) -> None:
        groups: dict[int, list[int]] = defaultdict(list)
        for i in indices:
            if depth < len(choice_tokens[i]):
                groups[choice_tokens[i][depth]].append(i)
        for token, members in groups.items():
            for i in members:
                scores[i] += float(logprobs[token])
            if len(members) > 1:  # still ambiguous: look one token further down this branch
                llama.n_tokens = base + depth
                llama.eval([token])
                descend(members, depth + 1, _last_logprobs(llama))

    descend(list(range(len(choice_tokens))), 0, eval_prompt(llama, prompt_tokens))
    return scores
