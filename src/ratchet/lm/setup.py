"""Build DSPy LMs and adapters from settings and configure DSPy with them."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import dspy

from ratchet.config.settings import LMSettings, LocalModelSettings, ModelSettings, Settings
from ratchet.errors import ConfigError
from ratchet.lm.adapter import CompletionAdapter
from ratchet.lm.cache import configure_lm_cache, serving_caches
from ratchet.lm.engines.base import ThreadedAsyncEngine
from ratchet.lm.engines.llamacpp import LlamaCppEngine
from ratchet.lm.local_model import local_weights

__all__ = ["LMBundle", "build_adapter", "build_lm", "build_lms", "configure_dspy", "local_engine"]

_ENGINES: dict[tuple, LlamaCppEngine] = {}
_ENGINES_LOCK = threading.Lock()


def local_engine(local: LocalModelSettings) -> LlamaCppEngine:
    """The shared llama.cpp engine for these settings (one set of weights per process)."""
    weights = local_weights(local.model_path)
    key = (str(weights.path), weights.sha256, local.n_ctx, local.n_threads, local.n_batch,
           local.pool_size, local.cache_slots, local.prompt_cache_mb, local.seed, local.extra_buffers, local.self_test)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            engine = LlamaCppEngine(weights.path, model_id=weights.model_id, n_ctx=local.n_ctx,
                                    n_threads=local.n_threads, n_batch=local.n_batch,
                                    pool_size=local.pool_size, cache_slots=local.cache_slots,
                                    prompt_cache_bytes=None if local.prompt_cache_mb is None
                                    else local.prompt_cache_mb * 1_000_000,
                                    seed=local.seed, extra_buffers=local.extra_buffers,
                                    self_test=local.self_test, weights_sha256=weights.sha256)
            _ENGINES[key] = engine
    return engine


def build_lm(model: ModelSettings, local: LocalModelSettings | None = None, *, cache: bool = True) -> dspy.LM:
    """A ``dspy.LM`` for one model section: the embedded engine for ``"local"``, LiteLLM otherwise.

    ``cache=False`` turns DSPy's response cache off for it whatever the section says (serving).
    """
    common = {
        "temperature": model.temperature,
        "max_tokens": model.max_tokens,
        "cache": model.cache and cache,
        "num_retries": model.num_retries,
    }
    if model.is_local:
        engine = local_engine(local or LocalModelSettings())
        return dspy.LM(engine.model_id, engine=engine, async_engine=ThreadedAsyncEngine(engine),
                       model_type="text", **common)
    extra: dict[str, object] = {"timeout": model.timeout_s}
    if model.api_base:
        extra["api_base"] = model.api_base
    if model.api_key_env:
        key = os.environ.get(model.api_key_env)
        if not key:
            raise ConfigError(
                f"lm.api_key_env: environment variable {model.api_key_env} is not set (it should hold the API key)"
            )
        extra["api_key"] = key
    return dspy.LM(model.model, model_type=model.model_type, **common, **extra)


def build_adapter(model: ModelSettings) -> dspy.Adapter:
    """The adapter for a model: completion for base models (``auto`` + local), chat otherwise."""
    name = model.adapter
    if name == "auto":
        name = "completion" if model.is_local else "chat"
    if name == "completion":
        return CompletionAdapter(constrain=model.is_local and model.constrain_outputs,
                                 choice_scoring=model.choice_scoring if model.is_local else "off")
    if name == "json":
        return dspy.JSONAdapter()
    return dspy.ChatAdapter()


@dataclass
class LMBundle:
    """The configured models: task plus the optional prompt, teacher, reflection and fallback models."""

    task: dspy.LM
    adapter: dspy.Adapter
    prompt: dspy.LM
    teacher: dspy.LM
    reflection: dspy.LM
    fallback: dspy.LM | None
    fallback_adapter: dspy.Adapter | None
    engine: LlamaCppEngine | None = None  # the embedded engine, when the task model is local

    @classmethod
    def for_lm(cls, lm: dspy.LM, adapter: dspy.Adapter, *, fallback: dspy.LM | None = None,
               fallback_adapter: dspy.Adapter | None = None) -> LMBundle:
        """A bundle around one LM for every role (tests, benchmarks, embedding Ratchet)."""
        return cls(task=lm, adapter=adapter, prompt=lm, teacher=lm, reflection=lm, fallback=fallback,
                   fallback_adapter=fallback_adapter or (adapter if fallback is not None else None))

    def prepare(self) -> LMBundle:
        """Self-test the embedded model, if one is configured, before anything loads it in this process.

        Raises :class:`~ratchet.errors.ModelNotAvailableError` when it cannot run here (the test runs in a
        child process, so a llama.cpp crash does not take this one down); remembered per machine.
        """
        if self.engine is not None:
            self.engine.prepare()
        return self

    def warm_up(self) -> None:
        """Load the embedded model's weights now (after its self-test), so the first request does not pay for it."""
        if self.engine is not None:
            self.engine.warm_up()

    @property
    def model_id(self) -> str:
        return self.task.model

    @property
    def adapter_name(self) -> str:
        return type(self.adapter).__name__


def build_lms(lm: LMSettings, *, cache: bool = True) -> LMBundle:
    """Build every model the settings name; unset roles reuse the task model (``cache``: see ``build_lm``)."""
    local = lm.local
    task = build_lm(lm, local, cache=cache)
    prompt = build_lm(lm.prompt, local, cache=cache) if lm.prompt else task
    teacher = build_lm(lm.teacher, local, cache=cache) if lm.teacher else task
    reflection = build_lm(lm.reflection, local, cache=cache) if lm.reflection else prompt
    fallback = build_lm(lm.fallback, local, cache=cache) if lm.fallback else None
    return LMBundle(
        task=task,
        adapter=build_adapter(lm),
        prompt=prompt,
        teacher=teacher,
        reflection=reflection,
        fallback=fallback,
        fallback_adapter=build_adapter(lm.fallback) if lm.fallback else None,
        engine=local_engine(local) if lm.is_local else None,
    )


def configure_dspy(settings: Settings, *, serving: bool = False, bundle: LMBundle | None = None) -> LMBundle:
    """Configure DSPy globally from settings and return the models.

    Other processes get DSPy's disk cache under ``<home>/cache/dspy`` (``ratchet cleanup``
    removes it when unused). Serving processes get no disk cache and no memory cache unless
    ``serve.lm_cache = "memory"`` (a bounded LRU), and ``trace=None, disable_history=True``,
    so prompts (and PII) do not pile up in memory or on disk.
    """
    bundle = bundle or build_lms(settings.lm, cache=not serving or serving_caches(settings.serve))
    configure_lm_cache(settings, serving=serving)
    options: dict[str, object] = {"lm": bundle.task, "adapter": bundle.adapter, "track_usage": True}
    if serving:
        options.update(trace=None, disable_history=True)
    dspy.configure(**options)
    return bundle
