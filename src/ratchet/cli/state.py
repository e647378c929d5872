"""What commands share: the config path given on the command line, loaded lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from ratchet.config import Settings, load_settings
from ratchet.lm.setup import LMBundle, configure_dspy
from ratchet.programs import ProgramRegistry, load_programs
from ratchet.store.private import make_private_dir

__all__ = ["CliState", "get_state"]


@dataclass
class CliState:
    config_path: Path | None = None
    _settings: Settings | None = field(default=None, repr=False)
    _registry: ProgramRegistry | None = field(default=None, repr=False)
    _lms: LMBundle | None = field(default=None, repr=False)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
        return self._settings

    @property
    def registry(self) -> ProgramRegistry:
        if self._registry is None:
            self._registry = load_programs(self.settings)
        return self._registry

    def lms(self, *, serving: bool = False) -> LMBundle:
        """Build the configured models, self-test the embedded one and configure DSPy with them (once per process)."""
        if self._lms is None:
            make_private_dir(self.settings.home_dir)  # DSPy's disk cache (prompts, completions) goes under it
            self._lms = configure_dspy(self.settings, serving=serving).prepare()
        return self._lms


def get_state(ctx: typer.Context) -> CliState:
    root = ctx.find_root()
    if not isinstance(root.obj, CliState):
        root.obj = CliState()
    return root.obj
