"""A prompt's tokens against the task model's context: the embedded model's tokenizer, else LiteLLM's.

* the embedded model (llama.cpp): its own tokenizer (:meth:`~ratchet.lm.engines.llamacpp.LlamaCppEngine.
  count_tokens`) over the completion text the engine is sent, against ``lm.local.n_ctx`` minus the output
  budget (``max_tokens``);
* a LiteLLM model: ``litellm.token_counter`` (the provider's tokenizer where LiteLLM knows it, ``cl100k``
  otherwise) against ``max_input_tokens`` from LiteLLM's model table; a model missing from it has no budget.

Serving refuses prompts that do not fit (:class:`ratchet.serve.fit.PromptFit`); the ``auto`` optimizer sizes
its demo sets to fit, and keeps its candidates' prompts cached while it searches them (``keep_prompts``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

from ratchet.lm.setup import LMBundle

__all__ = ["PromptBudget", "as_completion", "message_text", "prompt_budget"]

Counter = Callable[[list[dict[str, Any]]], int]


@dataclass(frozen=True)
class PromptBudget:
    """How to count a prompt's tokens (``counter``: chat messages → tokens) and how many the model takes."""

    counter: Counter | None
    limit: int  # input tokens the model takes; 0 when unknown
    method: str  # "llama.cpp tokenizer", "litellm.token_counter" or "off"
    bytes_are_bounds: bool = False  # every token covers >= 1 byte (llama.cpp vocabularies): bytes bound tokens
    room: Callable[[int], AbstractContextManager[None]] | None = None  # the embedded engine's room_for_prompts

    @property
    def enabled(self) -> bool:
        return self.counter is not None and self.limit > 0

    def keep_prompts(self, tokens: int) -> AbstractContextManager[None]:
        """While the block runs, keep the KV caches of prompts of ``tokens`` tokens in all (the embedded model's
        prompt cache; nothing for a remote model), so prompts used in turns are not re-read each turn."""
        return self.room(tokens) if self.room is not None else nullcontext()


def prompt_budget(lms: LMBundle) -> PromptBudget:
    """The task model's prompt budget (see the module doc)."""
    output = int((lms.task.kwargs or {}).get("max_tokens") or 256)
    if lms.engine is not None:
        engine = lms.engine
        return PromptBudget(lambda messages: engine.count_tokens(as_completion(messages)), engine.n_ctx - output,
                            "llama.cpp tokenizer", bytes_are_bounds=True, room=engine.room_for_prompts)
    window = _litellm_window(lms.task.model)
    if window is None:
        return PromptBudget(None, 0, "off")
    model = lms.task.model
    return PromptBudget(lambda messages: _litellm_count(model, messages), window, "litellm.token_counter")


def as_completion(messages: list[dict[str, Any]]) -> str:
    """The text a completion model is sent for these messages (as :func:`ratchet.lm.engines.base.flatten_request`)."""
    if len(messages) == 1 and messages[0].get("role") == "user":
        return message_text(messages[0])
    return "\n\n".join(message_text(m) for m in messages) + "\n\n"


def message_text(message: Mapping[str, Any]) -> str:
    """The text of one chat message (string content, or the text parts of a list)."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content if isinstance(part, Mapping))
    return ""


def _litellm_window(model: str) -> int | None:
    try:
        import litellm

        info = litellm.get_model_info(model)
    except Exception:  # not in LiteLLM's table: no budget
        return None
    window = info.get("max_input_tokens") or info.get("max_tokens")
    return int(window) if window else None


def _litellm_count(model: str, messages: list[dict[str, Any]]) -> int:
    import litellm

    return int(litellm.token_counter(model=model, messages=messages))
