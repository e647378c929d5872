"""DSPy's response cache per kind of process: none in serving unless configured (and then bounded, in
memory only); a disk cache under the home, held open by a lock, for everything else."""

from pathlib import Path

import dspy
import pydantic
import pytest

from ratchet.config import Settings
from ratchet.lm import CompletionAdapter, LMBundle, ScriptedEngine, ThreadedAsyncEngine, configure_dspy
from ratchet.lm.cache import dspy_cache_dir, unused_dspy_cache
from ratchet.serve import Runtime

INPUTS = {"text": "Where is my card?"}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    settings = Settings(home=tmp_path / "home")
    settings.telemetry.sampling_rate = 0.0
    return settings


def cached_lm() -> tuple[dspy.LM, ScriptedEngine]:
    """A scripted LM that asks for DSPy's cache (``cache=True``), as a model section does by default."""
    engine = ScriptedEngine(lambda prompt: " card_arrival")
    lm = dspy.LM("scripted/cache", engine=engine, async_engine=ThreadedAsyncEngine(engine), cache=True,
                 num_retries=0)
    return lm, engine


def serve(settings: Settings, texts: list[str]) -> ScriptedEngine:
    lm, engine = cached_lm()
    with Runtime(settings, lms=LMBundle.for_lm(lm, CompletionAdapter())) as runtime:
        for text in texts:
            assert runtime.call("classify_intent", {"text": text}).success
    return engine


def test_serving_caches_nothing_by_default_even_for_an_lm_with_cache_true(settings: Settings) -> None:
    engine = serve(settings, ["Where is my card?"] * 3)
    assert engine.calls == 3  # the same request three times: the model answered each one
    assert not dspy.cache.enable_memory_cache and not dspy.cache.enable_disk_cache
    assert not (settings.home_dir / "cache").exists()


def test_serving_memory_cache_is_a_bounded_lru_and_never_on_disk(settings: Settings) -> None:
    settings.serve.lm_cache, settings.serve.lm_cache_entries = "memory", 3
    engine = serve(settings, ["Where is my card?"] * 3 + [f"card number {i}" for i in range(10)])
    assert engine.calls == 1 + 10  # the repeats were answered from the cache
    assert dspy.cache.memory_cache.maxsize == 3 and len(dspy.cache.memory_cache) == 3
    assert not dspy.cache.enable_disk_cache and not (settings.home_dir / "cache").exists()


def test_serving_models_built_from_settings_cache_only_when_serving_does(settings: Settings) -> None:
    settings.lm.model = "openai/gpt-4o-mini"  # built, never called
    settings.lm.fallback = settings.lm.model_copy()
    assert settings.lm.cache  # the section's default
    bundle = configure_dspy(settings, serving=True)
    assert not bundle.task.cache and not bundle.fallback.cache
    with Runtime(settings, configure=False) as runtime:  # DSPy configured by the caller: still no cache
        assert not runtime.lms.task.cache
    settings.serve.lm_cache = "memory"
    assert configure_dspy(settings, serving=True).task.cache
    settings.lm.cache = False  # a section may opt out of the memory cache
    assert not configure_dspy(settings, serving=True).task.cache


def test_other_processes_get_the_disk_cache_under_the_home_and_hold_it_open(settings: Settings) -> None:
    lm, engine = cached_lm()
    configure_dspy(settings, bundle=LMBundle.for_lm(lm, CompletionAdapter()))
    assert dspy.cache.enable_disk_cache and Path(dspy.cache.disk_cache_dir) == dspy_cache_dir(settings.home_dir)
    for _ in range(2):
        dspy.Predict("question -> answer")(question="2 + 2?")
    assert engine.calls == 1 and dspy_cache_dir(settings.home_dir).is_dir()
    with unused_dspy_cache(settings.home_dir) as unused:
        assert not unused  # this process holds it open
    configure_dspy(settings, serving=True, bundle=LMBundle.for_lm(lm, CompletionAdapter()))
    with unused_dspy_cache(settings.home_dir) as unused:
        assert unused  # serving let it go


@pytest.mark.parametrize("values", [{"lm_cache": "disk"}, {"lm_cache_entries": 0},
                                    {"lm_cache_entries": 1_000_000_000}])
def test_serve_cache_settings_are_checked(values: dict) -> None:
    with pytest.raises(pydantic.ValidationError):
        Settings(serve=values)
