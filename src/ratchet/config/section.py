"""The base of every ``ratchet.toml`` section model, and the names of the DSPy adapters a model may use."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["AdapterName", "Section"]

AdapterName = Literal["auto", "completion", "chat", "json"]


class Section(BaseModel):
    """A section of ``ratchet.toml``: unknown keys are errors, and assigned values are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
