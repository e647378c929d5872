"""LM engines (DSPy 3.4 ``complete(Request) -> Response``): one file per implementation."""

from ratchet.lm.engines.base import ThreadedAsyncEngine, flatten_request, text_response
from ratchet.lm.engines.llamacpp import LlamaCppEngine
from ratchet.lm.engines.scripted import ScriptedEngine

__all__ = ["LlamaCppEngine", "ScriptedEngine", "ThreadedAsyncEngine", "flatten_request", "text_response"]
