"""Import the modules named in ``programs = [...]`` so their ``@program`` decorators run."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

from ratchet.config.settings import Settings
from ratchet.errors import ConfigError, RatchetError
from ratchet.programs.registry import REGISTRY, ProgramRegistry

__all__ = ["import_program_source", "load_programs"]


def import_program_source(entry: str, base_dir: Path) -> None:
    """Import a dotted module name, or a ``.py`` file (relative to ``base_dir``)."""
    if entry.endswith(".py") or "/" in entry or "\\" in entry:
        path = Path(entry).expanduser()
        path = path if path.is_absolute() else (base_dir / path)
        if not path.is_file():
            raise FileNotFoundError(f"no such file {path}")
        digest = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
        name = f"ratchet_user_programs.{path.stem}_{digest}"
        if name in sys.modules:
            return
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot import {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return
    importlib.import_module(entry)


def load_programs(settings: Settings) -> ProgramRegistry:
    """Import every configured program source and return the registry they filled."""
    where = str(settings.config_file) if settings.config_file else "configuration"
    for entry in settings.programs:
        try:
            import_program_source(entry, settings.base_dir)
        except RatchetError as exc:
            raise type(exc)(f"{where}: programs entry '{entry}': {exc}") from exc
        except (ImportError, FileNotFoundError, SyntaxError) as exc:
            raise ConfigError(f"{where}: key 'programs': cannot load '{entry}': {exc}") from exc
    return REGISTRY
