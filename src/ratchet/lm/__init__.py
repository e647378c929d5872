"""Language models: the embedded llama.cpp model, LiteLLM models, and the completion adapter."""

from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.engines import LlamaCppEngine, ScriptedEngine, ThreadedAsyncEngine
from ratchet.lm.local_model import LocalWeights, bundled_weights, local_weights
from ratchet.lm.setup import LMBundle, build_adapter, build_lm, build_lms, configure_dspy, local_engine

__all__ = [
    "CompletionAdapter",
    "LMBundle",
    "LlamaCppEngine",
    "LocalWeights",
    "ScriptedEngine",
    "ThreadedAsyncEngine",
    "build_adapter",
    "build_lm",
    "build_lms",
    "bundled_weights",
    "configure_dspy",
    "local_engine",
    "local_weights",
]
