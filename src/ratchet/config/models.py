"""The model sections: ``[lm]`` (the task model, the embedded model and the optional helper models) and
``[optimize]``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from ratchet.config.section import AdapterName, Section

__all__ = ["LMSettings", "LocalModelSettings", "ModelSettings", "OptimizeSettings"]


class ModelSettings(Section):
    """One language model: the task model, or a prompt/teacher/reflection/fallback model."""

    model: str = Field("local", min_length=1, description="'local' (embedded Gemma) or a LiteLLM model string")
    adapter: AdapterName = Field("auto", description="auto = completion for base models, chat otherwise")
    model_type: Literal["chat", "text"] = "chat"
    constrain_outputs: bool = Field(
        True, description="embedded model: decode answers with several or typed output fields under a grammar of "
                          "their shape (zero-shot from the first call; with demos as the retry)")
    choice_scoring: Literal["off", "likelihood", "calibrated"] = Field(
        "calibrated", description="embedded model: answer single-choice outputs by scoring the choices")
    api_base: str | None = Field(None, description="OpenAI-compatible server URL, e.g. a vLLM endpoint")
    api_key_env: str | None = Field(None, description="name of the environment variable holding the API key")
    temperature: float = Field(0.0, ge=0.0, le=2.0)
    max_tokens: int = Field(256, gt=0, le=32768)
    timeout_s: float = Field(60.0, gt=0)
    num_retries: int = Field(3, ge=0, le=10)
    cache: bool = Field(True, description="DSPy's response cache for this model; serving caches only with "
                                          "serve.lm_cache = 'memory'")
    base_model: bool | None = Field(
        None, description="a base (completion) model, whose demos matter most: the auto optimizer searches them "
                          "first; default: true for the embedded model and for adapter = 'completion'")
    input_cost_per_1m_usd: float | None = Field(None, ge=0, description="price override for cost estimates")
    output_cost_per_1m_usd: float | None = Field(None, ge=0)

    @property
    def is_local(self) -> bool:
        return self.model == "local"


class LocalModelSettings(Section):
    """The embedded llama.cpp model used when ``model = "local"``."""

    model_path: Path | None = Field(None, description="a GGUF file; default: bundled Gemma 3 270M Q4_K_M")
    n_ctx: int = Field(4096, ge=256, le=131072)
    n_threads: int = Field(0, ge=0, description="0 = all cores")
    n_batch: int = Field(512, ge=8)
    pool_size: int = Field(1, ge=1, le=16, description="calls computed at once (1 = serialised)")
    cache_slots: int = Field(1, ge=1, le=16, description="llama.cpp contexts kept (at least pool_size), each "
                                                       "holding one prompt prefix; the prompt cache keeps the others")
    prompt_cache_mb: int | None = Field(
        None, ge=0, le=65_536, description="memory for the KV caches of the prompt prefixes served (each program "
                                           "and A/B arm keeps its own), restored in milliseconds instead of "
                                           "recomputed; unset = two full contexts' worth (~150 MB for the bundled "
                                           "model at n_ctx 4096), 0 = off")
    seed: int = 0
    extra_buffers: Literal["auto", "on", "off"] = Field(
        "auto", description="llama.cpp weight repacking at load: auto = off on CPUs with AMX (it crashes there), "
                            "on elsewhere")
    self_test: bool = Field(True, description="load the model once in a child process first, so a llama.cpp "
                                              "crash is a clear error (remembered per library, weights and CPU)")


class LMSettings(ModelSettings):
    """The task model plus the optional models optimizers and serving use."""

    local: LocalModelSettings = Field(default_factory=LocalModelSettings)
    prompt: ModelSettings | None = Field(None, description="instruction-proposal model; default: task model")
    teacher: ModelSettings | None = Field(None, description="bootstrapping teacher; default: task model")
    reflection: ModelSettings | None = Field(None, description="GEPA reflection model; default: prompt model")
    fallback: ModelSettings | None = Field(None, description="used by serving when the task model fails")


OptimizerName = Literal["auto", "mipro", "bootstrap", "bootstrap-rs", "labeled", "gepa", "simba"]


class OptimizeSettings(Section):
    """Defaults of ``ratchet optimize`` and of the cycle's optimize phase."""

    optimizer: OptimizerName = Field("auto", description="auto = demo search, then budgeted MIPROv2 instructions "
                                                         "for base models; MIPROv2 for chat models")
    budget_minutes: float | None = Field(None, gt=0, description="time limit of one optimization (auto); default: "
                                         "the demo search, then instructions for instruction_share of its time")
    instruction_share: float = Field(0.5, ge=0, le=10, description="auto without a budget: the instruction "
                                     "search's time as a share of the demo search's")
