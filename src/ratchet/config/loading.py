"""Find, read and validate the configuration; turn mistakes into clear errors."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ratchet.config.settings import SECRET_KEYS, Settings
from ratchet.errors import ConfigError

__all__ = ["CONFIG_ENV", "CONFIG_FILENAME", "find_config_file", "load_settings"]

CONFIG_FILENAME = "ratchet.toml"
CONFIG_ENV = "RATCHET_CONFIG"
_ENV_PREFIX = "RATCHET_"


def find_config_file(explicit: str | Path | None = None) -> Path | None:
    """The config file to read: ``explicit``, else ``$RATCHET_CONFIG``, else ``./ratchet.toml`` if present."""
    chosen = explicit or os.environ.get(CONFIG_ENV)
    if chosen:
        path = Path(chosen).expanduser()
        if not path.is_file():
            source = "--config" if explicit else CONFIG_ENV
            raise ConfigError(f"{source}: config file {path} does not exist")
        return path.resolve()
    default = Path.cwd() / CONFIG_FILENAME
    return default.resolve() if default.is_file() else None


def load_settings(path: str | Path | None = None) -> Settings:
    """Load settings from the config file (see :func:`find_config_file`) and ``RATCHET_*`` variables."""
    config_file = find_config_file(path)
    data = _read_toml(config_file) if config_file else {}
    for dotted in SECRET_KEYS:
        section, _, key = dotted.partition(".")
        if isinstance(data.get(section), dict) and key in data[section]:
            env_name = f"{_ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(f"{config_file}: key '{dotted}' is a secret: set the environment variable "
                              f"{env_name} instead of writing it in the file")
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file, os.environ)) from None
    settings._config_file = config_file
    return settings


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    try:
        return tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not valid UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def _describe(exc: ValidationError, config_file: Path | None, env: Mapping[str, str]) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(part) for part in err["loc"]]
        key = ".".join(loc)
        env_name = _ENV_PREFIX + "__".join(part.upper() for part in loc)
        env_keys = {k.upper() for k in env}
        if env_name in env_keys:
            source = f"environment variable {env_name}"
        else:
            source = str(config_file) if config_file else "configuration"
        if err["type"] == "extra_forbidden":
            lines.append(f"{source}: unknown key '{key}'")
            continue
        if not loc:  # a rule across keys: its message names them
            lines.append(f"{source}: {err['msg']}")
            continue
        expected = err["msg"]
        got = err.get("input")
        shown = f" (got {got!r})" if got is not None and not isinstance(got, dict) else ""
        lines.append(f"{source}: key '{key}': {expected}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(lines) if len(lines) > 1 else lines[0]
